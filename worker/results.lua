-- The result backend's guarded write (worker/results.py).

--! script set_unless_settled
-- The task's encoded meta, expiring after `expires` s (0: none), unless the state in place is
-- settled: a SUCCESS stays, and a FAILURE stays unless a final state replaces it. Returns 1 when
-- written (and published, as Celery does), 0 when the state in place stays.
local function status_of(encoded)
  local ok, decoded = pcall(cjson.decode, encoded)
  if ok and type(decoded) == 'table' then return decoded.status end
end
local current = redis.call('GET', meta)
if current then
  local status = status_of(current)
  if status == 'SUCCESS' then return 0 end
  if status == 'FAILURE' then
    local new = status_of(encoded_meta)
    if new ~= 'SUCCESS' and new ~= 'FAILURE' then return 0 end
  end
end
if tonumber(expires) > 0 then
  redis.call('SETEX', meta, expires, encoded_meta)
else
  redis.call('SET', meta, encoded_meta)
end
redis.call('PUBLISH', meta, encoded_meta)
return 1
