"""Local Sphinx extension of the aiida-xesml docs: two directives for the API reference.

``xesml-automodule``
    ``automodule`` that tolerates a *planned* module of this package which does not exist yet:
    when importing it fails because a module named ``aiida_xesml...`` is missing, the directive
    renders a short "not in this build" note instead of autodoc's import warning (which ``-W``
    turns into an error). Any other import error still goes through autodoc and fails the build,
    so a broken module is never hidden.

``xesml-process``
    Tables of the inputs, outputs and exit codes of an AiiDA process class, read from its
    ``spec()``. Unlike ``aiida.sphinxext`` it never loads an AiiDA profile, so the build needs
    none.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

PACKAGE = "aiida_xesml"
# Exit codes below this are aiida-core's generic ones (1, 2, 10, 11), shared by every process.
FIRST_PLUGIN_EXIT_CODE = 100


def missing_planned_module(module_name: str) -> str | None:
    """Import ``module_name``; return the name of the missing ``aiida_xesml`` module that stops it,
    or None when it imports. Other import errors propagate to the caller's handling (autodoc)."""
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == PACKAGE or exc.name.startswith(PACKAGE + ".")):
            return exc.name
        raise
    return None


def planned_note(subject: str, missing: str) -> nodes.Node:
    """An admonition saying that ``subject`` is documented once ``missing`` exists."""
    admonition = nodes.admonition(classes=["note"])
    admonition += nodes.title(text="Not in this build yet")
    paragraph = nodes.paragraph()
    paragraph += nodes.literal(text=subject)
    if missing == subject:
        paragraph += nodes.Text(" is planned and does not exist in this checkout yet. ")
    else:
        paragraph += nodes.Text(" needs ")
        paragraph += nodes.literal(text=missing)
        paragraph += nodes.Text(", which does not exist in this checkout yet. ")
    paragraph += nodes.Text("This section is generated from its docstrings once it is there.")
    admonition += paragraph
    return admonition


class XesmlAutomodule(SphinxDirective):
    """``automodule`` for modules of this package, with a note for planned modules."""

    required_arguments = 1
    has_content = False
    option_spec = {
        "members": directives.unchanged,
        "exclude-members": directives.unchanged,
        "undoc-members": directives.flag,
        "show-inheritance": directives.flag,
        # Leave out the module's own docstring (its members are still documented): for a module
        # whose docstring is not valid reST yet, until it is fixed in the package.
        "skip-module-docstring": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            missing = missing_planned_module(name)
        except Exception:  # noqa: BLE001  autodoc reports it (with the traceback) and -W fails the build
            missing = None
        if missing is not None:
            logger.info("xesml-automodule: %s not documented (%s does not exist yet)", name, missing)
            return [planned_note(name, missing)]
        options = dict(self.options)
        if "skip-module-docstring" in options:
            del options["skip-module-docstring"]
            SKIPPED_MODULE_DOCSTRINGS.add(name)
        lines = [f".. automodule:: {name}"]
        for option, value in options.items():
            lines.append(f"   :{option}:" + (f" {value}" if value else ""))
        return self.parse_text_to_nodes("\n".join(lines) + "\n")


# Modules whose own docstring ``xesml-automodule :skip-module-docstring:`` leaves out.
SKIPPED_MODULE_DOCSTRINGS: set[str] = set()


def skip_module_docstring(app, what, name, obj, options, lines) -> None:
    """autodoc-process-docstring: drop the docstring of the modules listed above."""
    if what == "module" and name in SKIPPED_MODULE_DOCSTRINGS:
        lines[:] = []


def _type_name(valid_type) -> str:
    if valid_type is None:
        return "any"
    types = valid_type if isinstance(valid_type, tuple) else (valid_type,)
    # aiida adds NoneType to optional inputs; the "required" column already says that.
    names = [getattr(item, "__name__", str(item)) for item in types if item is not type(None)]
    return " or ".join(names) or "any"


def _cell(content) -> nodes.entry:
    entry = nodes.entry()
    paragraph = nodes.paragraph()
    if isinstance(content, nodes.Node):
        paragraph += content
    else:
        paragraph += nodes.Text(str(content))
    entry += paragraph
    return entry


def _table(headers: list[str], rows: list[list], widths: list[int]) -> nodes.table:
    table = nodes.table(classes=["xesml-process-table"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    header_row = nodes.row()
    for header in headers:
        header_row += _cell(header)
    head += header_row
    body = nodes.tbody()
    group += body
    for values in rows:
        row = nodes.row()
        for value in values:
            row += _cell(value)
        body += row
    return table


def _entry_point(module_name: str, class_name: str) -> tuple[str, str] | None:
    """(group, name) of the aiida entry point registered for the class, if any."""
    value = f"{module_name}:{class_name}"
    for group in ("aiida.workflows", "aiida.calculations"):
        for entry_point in importlib.metadata.entry_points(group=group):
            if entry_point.value == value:
                return group, entry_point.name
    return None


class XesmlProcess(SphinxDirective):
    """Inputs, outputs and exit codes of a process class, from its spec (no profile needed).

    The directive's content, if any, describes the outputs attached at run time (dynamic outputs)
    and is placed under the outputs table.
    """

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        path = self.arguments[0]
        module_name, _, class_name = path.rpartition(".")
        missing = missing_planned_module(module_name)
        if missing is not None:
            return [planned_note(path, missing)]
        process_class = getattr(importlib.import_module(module_name), class_name)
        spec = process_class.spec()
        result: list[nodes.Node] = []

        intro = nodes.paragraph()
        intro += nodes.strong(text=class_name)
        entry_point = _entry_point(module_name, class_name)
        if entry_point is None:
            intro += nodes.Text(": no entry point registered yet; import the class from ")
            intro += nodes.literal(text=module_name)
            intro += nodes.Text(".")
        else:
            group, name = entry_point
            factory = "WorkflowFactory" if group == "aiida.workflows" else "CalculationFactory"
            intro += nodes.Text(" — entry point ")
            intro += nodes.literal(text=name)
            intro += nodes.Text(" (")
            intro += nodes.literal(text=f"{factory}('{name}')")
            intro += nodes.Text(").")
        result.append(intro)

        inputs = []
        for name, port in spec.inputs.items():
            if name == "metadata":
                continue
            is_namespace = hasattr(port, "ports")
            kind = "namespace" if is_namespace else _type_name(port.valid_type)
            inputs.append([nodes.literal(text=name), kind, "yes" if port.required else "no", port.help or ""])
        result.append(nodes.rubric(text="Inputs"))
        result.append(_table(["name", "type", "required", "description"], inputs, [18, 14, 8, 60]))

        outputs = [
            [nodes.literal(text=name), "namespace" if hasattr(port, "ports") else _type_name(port.valid_type),
             "yes" if port.required else "no", port.help or ""]
            for name, port in spec.outputs.items()
        ]
        if spec.outputs.dynamic:
            outputs.append(["(dynamic)", "", "", "Further outputs, attached at run time (see below the table)."])
        result.append(nodes.rubric(text="Outputs"))
        result.append(_table(["name", "type", "required", "description"], outputs, [18, 14, 8, 60]))
        if self.content:
            result.extend(self.parse_content_to_nodes())

        codes = sorted(((label, code) for label, code in spec.exit_codes.items()
                        if code.status >= FIRST_PLUGIN_EXIT_CODE), key=lambda item: item[1].status)
        result.append(nodes.rubric(text="Exit codes"))
        result.append(_table(
            ["status", "label", "message"],
            [[str(code.status), nodes.literal(text=label), code.message] for label, code in codes],
            [8, 30, 62],
        ))
        note = nodes.paragraph(text="3xx: the inputs are invalid (nothing was run); 4xx: a child process failed. "
                                    "aiida-core's generic exit codes (1-11) apply as well.")
        result.append(note)
        return result


def setup(app):
    app.connect("autodoc-process-docstring", skip_module_docstring)
    app.add_directive("xesml-automodule", XesmlAutomodule)
    app.add_directive("xesml-process", XesmlProcess)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
