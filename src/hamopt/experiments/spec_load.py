r"""Reading a spec file, turning validation errors into one line, and the checks of this machine.

A spec reaches the run engine only through :func:`load_spec` (a file) or :func:`parse_spec`
(parsed data), and, before any run, :func:`check_runnable` (what only this machine can answer:
is the device there, is the data there). Each refusal is a :class:`~hamopt.errors.SpecError`
whose message is one line naming the field (``model.depth``, ``optimizers[1].step_sizes``) and
the values allowed there.

The file must be UTF-8 text (a UTF-8 byte-order mark is accepted; UTF-16/32 and binary files are
refused), at most :data:`MAX_SPEC_BYTES`, holding one YAML mapping in which no mapping, at any
depth, repeats a key (YAML parsers otherwise keep the last value silently).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ..errors import SpecError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from .spec import ExperimentSpec

__all__ = [
    "MAX_SPEC_BYTES",
    "check_runnable",
    "describe_validation_error",
    "load_spec",
    "one_line",
    "parse_spec",
    "read_spec_text",
]

MAX_SPEC_BYTES = 1 << 20
_WIDE_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16",
}


def one_line(text: str) -> str:
    """``text`` with its lines joined by ``"; "`` (messages of third-party parsers span lines)."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


# ---------------------------------------------------------------------- validation messages
def _loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out and not out.endswith(".") else "") + str(part)
    return out


def _field_at(model: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic ``FieldInfo`` that ``loc`` (``("model", "depth")``) reaches from ``model``."""
    from pydantic import BaseModel

    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _inner_model(info.annotation)
    return info


def _inner_model(annotation: Any) -> Any:
    """The pydantic model inside ``X``, ``X | None``, ``list[X]``; else None."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _allowed(info: Any, kind: str) -> str:
    """``an integer in [5, 10000000]``, ``a finite number in (0, 1]``... from a field's bounds."""
    low = high = None
    low_open = high_open = False
    for item in info.metadata if info is not None else ():
        if getattr(item, "ge", None) is not None:
            low = item.ge
        if getattr(item, "gt", None) is not None:
            low, low_open = item.gt, True
        if getattr(item, "le", None) is not None:
            high = item.le
        if getattr(item, "lt", None) is not None:
            high, high_open = item.lt, True
    if low is None and high is None:
        return kind
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"{kind} in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_INT_ERRORS = {"int_type", "int_parsing", "int_from_float", "strict_int"}
_FLOAT_ERRORS = {"float_type", "float_parsing", "finite_number"}


def _message(err: dict[str, Any], model: Any) -> str:
    """pydantic's message for ``err``, or ``must be an integer in [a, b], got x`` where the
    field's bounds say more than pydantic does (it names only the bound that was crossed)."""
    kind = err["type"]
    msg = err["msg"]
    if kind == "extra_forbidden":
        return "unknown key (not allowed here)"
    if kind == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if model is not None and kind in _RANGE_ERRORS | _INT_ERRORS | _FLOAT_ERRORS:
        info = _field_at(model, err["loc"])
        number = "an integer" if kind in _INT_ERRORS or "int" in str(getattr(info, "annotation", "")) else (
            "a finite number"
        )
        if info is not None:
            return f"must be {_allowed(info, number)}, got {err['input']!r}"
    return msg


def describe_validation_error(exc: ValidationError, prefix: str = "", *, model: Any = None) -> str:
    """One line per pydantic error, ``field.path: message``, joined with ``"; "``; with the
    validated ``model`` class, range and type errors state the field's whole allowed range."""
    lines = []
    for err in exc.errors():
        # drop pydantic's validator and union/literal branch tags such as 'list[float]'
        loc = tuple(
            p
            for p in err["loc"]
            if not (
                isinstance(p, str)
                and (p.startswith("function-") or "[" in p or p in ("float", "int", "str"))
            )
        )
        msg = _message(err, model)
        where = _loc(loc, prefix)
        if not where:  # a whole-spec check: its message starts with the field it names
            lines.append(msg)
        elif where.endswith("."):  # a model-level error under a prefix ("hyper.") names its key
            lines.append(f"{where}{msg}")
        else:
            lines.append(f"{where}: {msg}")
    return one_line("; ".join(dict.fromkeys(lines)))


# ---------------------------------------------------------------------- reading the file
def read_spec_text(path: str | Path) -> str:
    """The text of spec file ``path``; :class:`SpecError` for a missing path, a directory, an
    oversized or binary file, or text that is not UTF-8."""
    p = Path(path)
    if not p.exists():
        raise SpecError(f"spec file {str(p)!r} does not exist")
    if not p.is_file():
        raise SpecError(f"spec file {str(p)!r} is not a file (a directory?); give a YAML file")
    try:
        size = p.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"spec file {str(p)!r} has {size} bytes; a spec has at most {MAX_SPEC_BYTES}")
        raw = p.read_bytes()
    except OSError as exc:
        raise SpecError(f"spec file {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    for bom, encoding in _WIDE_BOMS.items():
        if raw.startswith(bom):
            raise SpecError(f"{p}: the file is {encoding} text; save it as UTF-8")
    if b"\x00" in raw:
        raise SpecError(f"{p}: the file is binary (it holds NUL bytes); a spec is UTF-8 YAML text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{p}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
            "save it as UTF-8"
        ) from None


def _duplicate_key(node: Any, path: str, seen: set[int]) -> str | None:
    """The first repeated mapping key in a composed YAML node tree, as a message, or None."""
    import yaml

    if id(node) in seen:
        return None
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<":
                line = key_node.start_mark.line + 1
                where = f"{path}.{key}" if path else str(key)
                if key in first_line:
                    return (
                        f"{where}: duplicated key on line {line} (first given on line "
                        f"{first_line[key]}); give each key once"
                    )
                first_line[key] = line
            else:
                where = path
            found = _duplicate_key(value_node, where, seen)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, f"{path}[{i}]", seen)
            if found:
                return found
    return None


def _parse_yaml(text: str, source: str) -> Any:
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        duplicate = _duplicate_key(node, "", set()) if node is not None else None
        if duplicate:
            raise SpecError(f"{source}: {duplicate}")
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(filter(None, (exc.context, exc.problem)))
        raise SpecError(one_line(f"{source}: not valid YAML: {where}{what}")) from None
    except yaml.YAMLError as exc:
        raise SpecError(one_line(f"{source}: not valid YAML: {exc}")) from None
    except RecursionError:
        raise SpecError(f"{source}: not valid YAML: nested too deeply") from None


# ---------------------------------------------------------------------- spec from data / file
def parse_spec(data: Any, *, source: str = "spec") -> ExperimentSpec:
    """Validate a mapping (e.g. parsed YAML) into an :class:`~hamopt.experiments.spec.ExperimentSpec`."""
    from pydantic import ValidationError

    from .spec import ExperimentSpec

    if data is None:
        raise SpecError(f"{source}: the spec is empty; it must be a mapping with at least dataset, "
                        "model, batch_size, steps, optimizers and seeds")
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a single string"}.get(type(data), type(data).__name__)
        raise SpecError(f"{source}: the spec must be a mapping of keys to values (key: value lines), "
                        f"got {kind}")
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            f"{source}: invalid spec: {describe_validation_error(exc, model=ExperimentSpec)}"
        ) from None
    except (TypeError, ValueError) as exc:
        raise SpecError(one_line(f"{source}: invalid spec: {exc}")) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate a YAML spec file (see the module docstring for what is refused)."""
    text = read_spec_text(path)
    return parse_spec(_parse_yaml(text, str(path)), source=str(path))


# ---------------------------------------------------------------------- this machine
def available_devices() -> list[str]:
    """The devices torch can use here: ``cpu``, ``cuda:0`` … ``cuda:N-1``, ``mps``."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_runnable(spec: ExperimentSpec, *, source: str = "spec") -> None:
    """Refuse, with a :class:`SpecError`, a valid spec that cannot run on this machine: its device
    is absent (``cuda`` without CUDA, ``cuda:7`` with fewer GPUs, ``mps`` off a Mac), its dtype is
    unsupported there (float64 on ``mps``), or its data is not where the spec says."""
    from ..data import DatasetOptionError, check_dataset_available

    devices = available_devices()
    device = spec.device
    here = "cuda:0" if device == "cuda" else device
    if here not in devices:
        raise SpecError(
            f"{source}: device: {device!r} is not available on this machine; available here: "
            f"{', '.join(map(repr, devices))}"
        )
    if device == "mps" and spec.dtype == "float64":
        raise SpecError(f"{source}: dtype: 'float64' is not supported on 'mps'; use 'float32'")
    d = spec.dataset
    try:
        check_dataset_available(d.name, root=d.root, download=d.download)
    except DatasetOptionError as exc:
        raise SpecError(one_line(f"{source}: dataset.{exc.option}: {exc}")) from None
