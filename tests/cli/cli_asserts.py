"""Assertions on click's CliRunner results, shared by the CLI tests."""


def assert_ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert result.exception is None, result.output


def assert_fails(result, *fragments):
    """Non-zero exit, a clean SystemExit (no traceback) and a message naming the problem."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, f"{fragment!r} not in:\n{result.output}"
