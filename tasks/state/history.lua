-- Jobs' steps and each order's jobs (tasks/state/history.py documents the keys). The library's
-- keys: history (the job's steps), story (its order's jobs; '' when it names no order).
--! library
-- Append the steps (a JSON list of JSON strings); a job's first steps start with head (its task,
-- order and position: what the order's page lists it by); the job joins its order's jobs at
-- position (kept: the newest STORY_MAX, for story_ttl).
local function tell(steps, head, job, position, ttl, story_ttl)
  local told = cjson.decode(steps)
  if #told == 0 then return end
  -- The head goes first (before a producer's `enqueued` step, if one came before us).
  local function headed()
    return string.find(redis.call('LINDEX', history, 0) or '', '"k":"job"', 1, true)
  end
  if not headed() then redis.call('LPUSH', history, head) end
  for _, step in ipairs(told) do redis.call('RPUSH', history, step) end
  redis.call('LTRIM', history, -HISTORY_MAX, -1)
  -- The head stays first, over the oldest step kept, when the cap drops it.
  if not headed() then redis.call('LSET', history, 0, head) end
  redis.call('EXPIRE', history, ttl)
  if story ~= '' then
    redis.call('ZADD', story, 'NX', position, job)
    redis.call('ZREMRANGEBYRANK', story, 0, -(STORY_MAX + 1))
    redis.call('EXPIRE', story, story_ttl)
  end
end

--! script tell
tell(steps, head, job, position, ttl, story_ttl)
