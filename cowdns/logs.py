"""Log set-up for ``cowdns serve``: text for people, JSON lines for log pipelines.

The JSON formatter writes one object per line with ``time``, ``level``,
``logger`` and ``message``, plus structured fields.  Fields come from two
places, and nothing is ever parsed out of a rendered message:

* ``extra={...}`` on the logging call, as the standard library intends;
* ``key=%s`` placeholders in the message template: the argument that fills a
  placeholder written right after ``key=`` is emitted as field ``key`` with its
  own type, so ``log.info("reload loaded generation=%d names=%d", 7, 1200)``
  yields ``"generation": 7, "names": 1200``.  The template is the code's own
  text, so this stays exact when the values contain spaces or ``=``.

Per-query lines (``--log-queries``) come from the engine's answer hook; they
are off by default because they cost a log call per answer.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import dns.rcode
import dns.rdatatype

if TYPE_CHECKING:
    from cowdns.engine import Engine
    from cowdns.filters.base import Answer, Request

__all__ = ["TEXT_FORMAT", "JsonFormatter", "log_queries", "setup_logging", "template_fields"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None)).keys()
    | {"message", "asctime", "taskName"}
)

# One printf conversion, optionally preceded by ``key=``.  ``%%`` is matched so it is
# skipped rather than taken for a placeholder.
_CONVERSION = re.compile(
    r"(?:(?<![\w.])(?P<key>[A-Za-z_]\w*)=)?%(?P<spec>%|[#0\- +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa])"
)


def template_fields(template: object, args: object) -> dict[str, object]:
    """Fields named by ``key=%x`` placeholders of a %-style template, with their arguments.

    Returns nothing unless ``args`` is a tuple that fills the template exactly.
    """
    if not isinstance(template, str) or not isinstance(args, tuple) or not args:
        return {}
    fields: dict[str, object] = {}
    index = 0
    for match in _CONVERSION.finditer(template):
        if match["spec"] == "%":
            continue
        if index >= len(args):
            return {}
        if match["key"] is not None:
            fields[match["key"]] = args[index]
        index += 1
    return fields if index == len(args) else {}


def _jsonable(value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = template_fields(record.msg, record.args)
        fields.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        for key, value in fields.items():
            body.setdefault(key, _jsonable(value))
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def setup_logging(level: str, log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) as text or JSON."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif log_format == "text":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        raise ValueError(f"unknown log format {log_format!r}")
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO (each etcd watch, each poll): noise for operators.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    return handler


def log_queries(engine: Engine, logger: logging.Logger | None = None) -> None:
    """Log one line per answer that takes the engine's normal path (``--log-queries``).

    Replies served from the response cache skip the engine's answer hooks, so
    they are not logged; the cache hit counter in the metrics counts them.
    """
    target = logging.getLogger("cowdns.query") if logger is None else logger

    def hook(request: Request, answer: Answer, reply: bytes) -> None:
        target.info(
            "query transport=%s qname=%s qtype=%s rcode=%s answers=%d size=%d by=%s",
            request.transport,
            request.qname.to_text(),
            dns.rdatatype.to_text(dns.rdatatype.RdataType(request.qtype)),
            dns.rcode.to_text(answer.rcode),
            sum(len(rrset) for rrset in answer.answer),
            len(reply),
            answer.by,
        )

    engine.on_answer.append(hook)
