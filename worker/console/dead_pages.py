"""``/dead``: the dead letters, filtered and paged; one letter; replays and purges.

The list reads the store a page at a time, oldest failure first (as ``zapi-queue dead list``),
and stops at ``ROWS`` matches or ``SCAN_LIMIT`` letters read, whichever comes first; its next
page resumes past the last letter read. Every action is one POST to ``/dead/act`` (CSRF-checked)
naming the letters (ticked job ids, or ``match=1`` and the filters):

* everything matching a filter, and any purge, first shows a preview (how many, how many with
  sends of unknown outcome) whose button confirms (``confirm=1``);
* a letter with sends of unknown outcome is replayed only with ``force=1`` *and* the ticked
  box ``understood=1`` (the second confirmation, ``--force`` of the CLI); otherwise it is
  refused and kept, and the action's page offers that second confirmation for those letters;
* confirmed, the action runs in the background (worker/console/actions.py) and its page
  follows it, refreshing itself until it is over.

Bodies are shown as ``dead show`` shows them (phone and PIX key masked) and, on top of that,
with every run of 8+ digits masked, as are errors and kwargs: a page is read by people.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tasks.contract.redaction import mask_digit_runs, mask_phone, masked_body
from tasks.state.deadletter import DeadLetter, DeadLetterStore, cursor
from worker.console.actions import Actions, Selection, counts, letters_of
from worker.console.app import render
from worker.console.csrf import Form, checked_form, first
from worker.console.dead_filters import chosen, described, filters_of

#: Matching letters shown per page.
ROWS = 50
#: Letters read at most for one page (a filter matching few of 100,000 must not read them all).
SCAN_LIMIT = 5000
#: Job ids one action takes at most.
MAX_SELECTED = 10_000
SECTION = "/dead"


def _store(request: Request) -> DeadLetterStore:
    store: DeadLetterStore = request.app.state.dead_letters
    return store


def _actions(request: Request) -> Actions:
    actions: Actions = request.app.state.actions
    return actions


def row(letter: DeadLetter) -> dict[str, Any]:
    """A letter as the list shows it, masked here, not in the template."""
    phone = letter.body.get("phone") if isinstance(letter.body, dict) else None
    return {
        "job_id": letter.job_id,
        "failed_at": letter.failed_at,
        "task": letter.task,
        "phone": mask_phone(phone) if phone is not None else "",
        "instance": letter.instance,
        "attempts": letter.attempts,
        "ambiguous": letter.ambiguous_attempts,
        "error_type": letter.error_type,
        "error": mask_digit_runs(letter.error[:160]),
    }


def shown_json(value: Any) -> str:
    return mask_digit_runs(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def dead_list(request: Request) -> Response:
    store = _store(request)
    fields = chosen(request.query_params)
    filters = filters_of(fields)
    after = _after(request.query_params.get("after_at"), request.query_params.get("after_id"))
    rows: list[dict[str, Any]] = []
    scanned, last = 0, None
    more = False
    for page in store.pages(after=after):
        for letter in page:
            if len(rows) >= ROWS or scanned >= SCAN_LIMIT:
                more = True
                break
            scanned, last = scanned + 1, letter
            if filters.matches(letter):
                rows.append(row(letter))
        if more:
            break
    next_query = None
    if more and last is not None:
        at, job_id = cursor(last)
        next_query = urlencode({**fields, "after_at": repr(at), "after_id": job_id})
    return render(
        request,
        "dead_list.html",
        section=SECTION,
        rows=rows,
        fields=fields,
        scanned=scanned,
        limited=more and len(rows) < ROWS,
        next_query=next_query,
        first_query=urlencode(fields),
        paged=after is not None,
        total=store.count(),
        dropped=store.dropped(),
        types=store.count_by_type(),
        instances=store.count_by_instance(),
    )


def _after(at: str | None, job_id: str | None) -> tuple[float, str] | None:
    if not at or job_id is None:
        return None
    try:
        return (float(at), job_id)
    except ValueError:
        raise HTTPException(400, "after_at: not a time") from None


def dead_letter(request: Request) -> Response:
    letter = _store(request).get(request.path_params["job_id"])
    if letter is None:
        raise HTTPException(404, "no dead letter with this id (replayed, purged or expired)")
    return render(
        request,
        "dead_letter.html",
        section=SECTION,
        letter=row(letter),
        first_attempt_at=letter.first_attempt_at,
        body=shown_json(masked_body(letter.body)),
        kwargs=shown_json(letter.kwargs),
        error=mask_digit_runs(letter.error),
    )


def _job_ids(form: Form) -> tuple[str, ...]:
    ids = [job_id.strip() for job_id in form.get("job_id", []) if job_id.strip()]
    if len(ids) > MAX_SELECTED:
        raise HTTPException(413, f"at most {MAX_SELECTED} letters at once: use a filter")
    return tuple(dict.fromkeys(ids))


async def act(request: Request) -> Response:
    """Preview, or start, a replay or purge (see the module's docstring for the rules)."""
    form = await checked_form(request)
    kind = first(form, "action")
    if kind not in ("replay", "purge"):
        raise HTTPException(400, "action must be replay or purge")
    job_ids = _job_ids(form)
    match = first(form, "match") == "1"
    if not job_ids and not match:
        raise HTTPException(400, "tick the letters to act on, or act on those matching a filter")
    fields = chosen({name: first(form, name) for name in form}) if match else {}
    filters = filters_of(fields) if match else None
    force_asked = first(form, "force") == "1"
    understood = first(form, "understood") == "1"
    if kind == "replay" and force_asked and not understood:
        raise HTTPException(
            400,
            "replaying letters with sends of unknown outcome needs the box ticked: they may "
            "reach the customer twice",
        )
    what = described(fields) if match else _chosen_words(job_ids)
    if (match or kind == "purge") and first(form, "confirm") != "1":
        return await _preview(request, kind, what, job_ids, fields)
    selection = Selection(job_ids=job_ids, filters=filters)
    action = _actions(request).start(
        request.state.user,
        kind,
        selection,
        what,
        forced=force_asked and kind == "replay",
        expected=_expected(form, job_ids),
    )
    return RedirectResponse(f"/dead/actions/{action.id}", status_code=303)


def _expected(form: Form, job_ids: tuple[str, ...]) -> int | None:
    if job_ids:
        return len(job_ids)
    value = first(form, "expected")
    return int(value) if value.isdigit() else None


def _chosen_words(job_ids: tuple[str, ...]) -> str:
    shown = ", ".join(job_ids[:3]) + (", ..." if len(job_ids) > 3 else "")
    return f"{len(job_ids)} chosen dead letter(s): {shown}"


async def _preview(
    request: Request,
    kind: str,
    what: str,
    job_ids: tuple[str, ...],
    fields: dict[str, str],
) -> Response:
    store = _store(request)
    if job_ids:
        found = await run_in_threadpool(letters_of, store, job_ids)
        matching, ambiguous = len(found), sum(1 for x in found if x.ambiguous_attempts)
    else:
        matching, ambiguous = await run_in_threadpool(counts, store, filters_of(fields))
    return render(
        request,
        "dead_preview.html",
        section=SECTION,
        kind=kind,
        what=what,
        job_ids=job_ids,
        fields=fields,
        matching=matching,
        ambiguous=ambiguous,
    )


def action_page(request: Request) -> Response:
    action = _actions(request).get(request.path_params["action_id"])
    if action is None:
        raise HTTPException(404, "no such action in this console (the audit log has them all)")
    return render(request, "dead_action.html", section=SECTION, action=action)


def actions_page(request: Request) -> Response:
    return render(
        request,
        "dead_actions.html",
        section=SECTION,
        running=_actions(request).recent(),
        audit=request.app.state.audit.recent(100),
    )


routes = [
    Route("/dead", dead_list, methods=["GET"]),
    Route("/dead/act", act, methods=["POST"]),
    Route("/dead/actions", actions_page, methods=["GET"]),
    Route("/dead/actions/{action_id}", action_page, methods=["GET"]),
    Route("/dead/{job_id:path}", dead_letter, methods=["GET"]),
]
