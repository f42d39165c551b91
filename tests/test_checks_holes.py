"""The holes of issue 10 in the exercise checker stay closed.

Each test here failed before the change it guards: a failed check shown in IPython with its
source, a wrong number answered with the right one, right answers in other numeric types refused,
wrong answers accepted (sparsemax with masked keys as logit 0, functions that modify their input
in place), and misdiagnoses (chapter 3's feature mean, chapter 5's transposed W, chapter 2's
1-based rows).
"""

import math
import re

import numpy as np
import pytest
import torch

from qklab.checks import core
from qklab.checks.core import ExerciseCheckError


@pytest.fixture(autouse=True)
def _fresh_attempts():
    core.reset_attempts()
    yield
    core.reset_attempts()


def _message(check, *args, **kwargs) -> str:
    with pytest.raises(ExerciseCheckError) as info:
        check(*args, **kwargs)
    return str(info.value)


# --- 1. message only, no traceback -------------------------------------------------------------


def test_ipython_shows_the_message_and_no_check_source(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from qklab.checks import attention

    shell = InteractiveShell.instance()
    result = shell.run_cell(
        "import torch\n"
        "from qklab.checks.attention import check_attention_pattern\n"
        "def wrong(X, W_Q, W_K, causal=False):\n"
        "    S = (X @ W_Q) @ (X @ W_K).transpose(-2, -1)\n"
        "    T = S.shape[-1]\n"
        "    if causal:\n"
        "        S = S.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float('-inf'))\n"
        "    return torch.softmax(S, dim=-1)\n"
        "check_attention_pattern(wrong)\n"
    )
    shown = capsys.readouterr().out
    assert isinstance(result.error_in_exec, ExerciseCheckError)
    assert "attention_pattern is not right yet" in shown
    assert "1/sqrt(d_h)" in shown  # the diagnosis is there
    # ...but none of the check's source: no hint text, no mistake formulas, no engine lines.
    for mistake in attention.ATTENTION_PATTERN_MISTAKES:
        assert mistake.hint not in shown
    for source_line in ("check_function(", "mistakes=ATTENTION_PATTERN_MISTAKES", "raise ExerciseCheckError", "hint=\"compute S"):
        assert source_line not in shown
    assert "Traceback" not in shown and "File " not in shown


def test_an_error_inside_the_readers_function_shows_the_readers_frames_only(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell(
        "from qklab.checks.attention import check_attention_pattern\n"
        "def broken(X, W_Q, W_K, causal=False):\n"
        "    scores = X @ W_Q @ W_K  # the shapes do not fit\n"
        "    return scores\n"
        "check_attention_pattern(broken)\n"
    )
    shown = capsys.readouterr().out
    assert "raised RuntimeError" in shown
    assert "scores = X @ W_Q @ W_K" in shown  # the reader's own line, to find the bug
    assert "check_function(" not in shown and "_call(" not in shown


# --- 2. do not give the value away -------------------------------------------------------------


def test_a_wrong_number_is_not_answered_with_the_right_one():
    from qklab.checks.collapse import check_uniform_causal_residual, uniform_causal_residual_reference
    from qklab.checks.intro import check_uniform_entropy

    msg = _message(check_uniform_entropy, 3.0, T=8)
    assert "2.079" not in msg and "2.08" not in msg
    assert "too large" in msg and "bits" in msg
    msg = _message(check_uniform_causal_residual, 0.4)
    want = uniform_causal_residual_reference()
    for text in (f"{want:.4g}", f"{want:.3g}", f"{want:.2f}"):
        assert text not in msg
    assert "too small" in msg


def test_the_hint_comes_on_the_second_failure_or_when_asked(capsys):
    from qklab import checks
    from qklab.checks.attention import check_attention_pattern

    def no_scale(X, W_Q, W_K, causal=False):
        S = (X @ W_Q) @ (X @ W_K).transpose(-2, -1)
        if causal:
            S = S.masked_fill(torch.ones(S.shape[-1], S.shape[-1]).triu(1).bool(), -math.inf)
        return torch.softmax(S, dim=-1)

    first = _message(check_attention_pattern, no_scale)
    assert "1/sqrt(d_h) factor" in first  # what is wrong
    assert "Hint:" not in first and "W_Q.shape[-1]" not in first  # not yet how to fix it
    assert 'qklab.checks.hint("ex-pattern")' in first  # how to ask
    second = _message(check_attention_pattern, no_scale)
    assert "Hint:" in second and "W_Q.shape[-1]" in second
    capsys.readouterr()
    checks.hint("ex-pattern")
    printed = capsys.readouterr().out
    assert "W_Q.shape[-1]" in printed and "softmax along the last axis" in printed


def test_hint_before_any_attempt_and_for_an_unknown_label(capsys):
    from qklab import checks

    checks.hint("ex-sparsemax")
    assert "zeta" in capsys.readouterr().out
    checks.hint("ex-no-such-exercise")
    assert "no exercise" in capsys.readouterr().out


def test_function_messages_show_the_readers_values_not_the_references():
    from qklab.checks.metrics import ENTROPY_CASES, _entropy_reference, check_mean_row_entropy

    msg = _message(check_mean_row_entropy, lambda A: 1.3 * _entropy_reference(A))
    want = float(_entropy_reference(*ENTROPY_CASES[0].args))
    assert f"{want:.4g}" not in msg and f"{want:.3g}" not in msg
    assert f"{1.3 * want:.4g}" in msg  # the reader's own value may be shown
    assert "too large by 10 to 50 %" in msg


# --- 3. right answers in other types; bad returns named ------------------------------------------


@pytest.mark.parametrize(
    "value",
    [np.int64(36), np.float32(36.0), np.array(36.0), np.array([36]), torch.tensor(36), torch.tensor(36.0, dtype=torch.float32),
     complex(36, 0), np.complex128(36 + 0j), torch.tensor(36 + 0j)],
    ids=lambda v: type(v).__name__ + str(getattr(v, "dtype", "")),
)
def test_check_value_accepts_other_numeric_types(value):
    from qklab.checks.spectrum import check_zero_counts

    check_zero_counts(value, 40)  # raises ExerciseCheckError if the type is refused


def test_check_value_accepts_float_types_near_the_answer():
    from qklab.checks.intro import check_uniform_entropy

    for value in (np.float32(math.log(8)), np.array(math.log(8)), torch.tensor(math.log(8), dtype=torch.float32), complex(math.log(8), 0.0)):
        check_uniform_entropy(value, T=8)


@pytest.mark.parametrize(
    "value, words",
    [("2.08", "str"), ([2.08], "list"), (complex(2.08, 1.0), "imaginary"), (True, "bool"), (float("nan"), "NaN"),
     (np.array([2.0, 1.0]), "2 numbers"), ({"H": 2.08}, "dict")],
)
def test_check_value_rejects_other_things_naming_them(value, words):
    from qklab.checks.intro import check_uniform_entropy

    assert words in _message(check_uniform_entropy, value, T=8)


def test_half_entropy_scale_names_bad_returns():
    from qklab.checks.collapse import check_half_entropy_scale

    assert "shape (2,)" in _message(check_half_entropy_scale, lambda X, B: torch.ones(2))
    assert "NaN" in _message(check_half_entropy_scale, lambda X, B: float("nan"))
    assert "str" in _message(check_half_entropy_scale, lambda X, B: "1.0")
    assert "raised ValueError" in _message(check_half_entropy_scale, lambda X, B: float("abc"))


def test_function_returns_in_numpy_or_python_numbers_are_accepted():
    from qklab.checks.metrics import check_mean_row_entropy, check_relative_residual

    check_mean_row_entropy(lambda A: float(-torch.special.xlogy(A, A).sum(-1).mean()), quiet=True)
    check_relative_residual(
        lambda X: np.linalg.norm((X - X.mean(-2, keepdim=True)).numpy(), axis=(-2, -1)) / np.linalg.norm(X.numpy(), axis=(-2, -1)),
        quiet=True,
    )


def test_nan_messages_say_where():
    from qklab.checks.attention import attention_pattern_reference, check_attention_pattern

    def nan_at_2_3(X, W_Q, W_K, causal=False):
        A = attention_pattern_reference(X, W_Q, W_K, causal).clone()
        A[..., 2, 3] = float("nan")
        return A

    assert "row 2, key 3 is NaN" in _message(check_attention_pattern, nan_at_2_3)


# --- 4. wrong answers that passed ------------------------------------------------------------------


def test_sparsemax_with_masked_keys_as_logit_zero_fails():
    from qklab.attention import sparsemax
    from qklab.checks.localization import check_sparsemax

    def masked_as_zero(z):
        return sparsemax(z.masked_fill(torch.isinf(z), 0.0), dim=-1)

    msg = _message(check_sparsemax, masked_as_zero)
    assert "-inf" in msg and "logit 0" in msg


def test_in_place_modification_of_the_input_is_caught():
    from qklab.checks.attention import check_attention_pattern
    from qklab.checks.collapse import check_running_products
    from qklab.checks.metrics import check_relative_residual

    def pattern_scaling_X(X, W_Q, W_K, causal=False):
        X.mul_(W_Q.shape[-1] ** -0.25)  # the 1/sqrt(d_h), split between queries and keys, into the caller's X
        S = (X @ W_Q) @ (X @ W_K).transpose(-2, -1)
        if causal:
            S = S.masked_fill(torch.ones(S.shape[-1], S.shape[-1]).triu(1).bool(), -math.inf)
        return torch.softmax(S, dim=-1)

    def residual_centering_X(X):
        norm = torch.linalg.matrix_norm(X)
        X -= X.mean(dim=-2, keepdim=True)
        return torch.linalg.matrix_norm(X) / norm

    def products_overwriting_A(A):
        for l in range(1, A.shape[-3]):
            A[..., l, :, :] = A[..., l, :, :] @ A[..., l - 1, :, :]
        return A

    assert re.search(r"modified its argument `X` in place", _message(check_attention_pattern, pattern_scaling_X))
    assert re.search(r"modified its argument `X` in place", _message(check_relative_residual, residual_centering_X))
    assert re.search(r"modified its argument `A` in place", _message(check_running_products, products_overwriting_A))


# --- 5. misdiagnoses -------------------------------------------------------------------------------


def test_chapter3_feature_mean_is_not_called_absolute_residual():
    from qklab.attention import pattern
    from qklab.checks.collapse import check_uniform_causal_residual

    A = pattern(torch.zeros(3, 3, dtype=torch.float64), causal=True)
    R = A - A.mean(dim=-1, keepdim=True)  # the feature mean instead of the token mean
    l1inf = lambda M: math.sqrt(float(M.abs().sum(-2).amax()) * float(M.abs().sum(-1).amax()))  # noqa: E731
    msg = _message(check_uniform_causal_residual, round(l1inf(R) / l1inf(A), 4))
    assert "absolute residual" not in msg
    assert "feature mean" in msg
    assert "absolute residual" in _message(check_uniform_causal_residual, round(14 / 18, 4))


def test_tighter_tolerance_to_name_a_mistake_than_to_accept():
    msg = _message(core.check_value, 1.5, 1.0, name="x", rtol=1e-2, mistakes={"m": (1.51, "h")})
    assert "looks like m" not in msg  # 1.5 is within the accepting tolerance of 1.51, not within the naming one
    assert "looks like m" in _message(core.check_value, 1.5101, 1.0, name="x", rtol=1e-2, mistakes={"m": (1.51, "h")})


def test_chapter2_hints_count_rows_from_0(capsys):
    from qklab import checks
    from qklab.checks import metrics

    checks.hint("ex-causal-ratio")
    recipe = " ".join(capsys.readouterr().out.split())
    assert "from 0" in recipe and "log(i + 1)" in recipe and "H_i = log i;" not in recipe

    _message(metrics.check_causal_uniform_ratio, 1.0, T=8)
    msg = _message(metrics.check_causal_uniform_ratio, 1.0, T=8)  # the second time, with the hint
    assert "i + 1 keys" in msg
    text = " ".join(msg.split())
    assert "counting from 1" not in text and "rows 2..T" not in text


def test_counts_are_exact():
    """Found while trying wrong answers: a count off by 2 in 4096 was accepted (rtol 1e-3)."""
    from qklab.checks.attention import check_qk_counts

    assert "too small" in _message(check_qk_counts, 2048, 4094, 1792)
    assert "too large" in _message(check_qk_counts, 2050, 4096, 1792)
    check_qk_counts(2048.0, np.int64(4096), torch.tensor(1792), quiet=True)


@pytest.mark.slow
def test_nbval_failure_report_shows_the_message_not_the_source(tmp_path):
    """nbval prints the kernel's traceback lines: with `_render_traceback_` they are the message."""
    import subprocess
    import sys

    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from qklab.checks.intro import check_uniform_entropy\ncheck_uniform_entropy(3.0, T=8)")]
    path = tmp_path / "wrong.ipynb"
    nbformat.write(nb, path)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:randomly", "-p", "no:cacheprovider", "-c", "/dev/null",
         "--rootdir", str(tmp_path), str(path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert run.returncode != 0
    out = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    assert "your answer 3 is too large" in out and "entropy in bits" in out
    assert "def check_uniform_entropy" not in out and "mistakes[" not in out and "check_value(" not in out


def test_bad_returns_are_named():
    """Found while trying answers: a missing `return`, and a (m, 1) u_new that was flattened and accepted."""
    from qklab.checks.attention import check_attention_pattern
    from qklab.checks.power_iteration import check_power_step, power_step_reference

    assert "returned None (is a `return` missing?)" in _message(check_attention_pattern, lambda X, W_Q, W_K, causal=False: None)

    def column_u(W, u):
        u_new, sigma = power_step_reference(W, u)
        return u_new.reshape(-1, 1), sigma

    assert "u_new must have shape (m,)" in _message(check_power_step, column_u)


def test_a_global_head_width_fails():
    """Chapter 1 defines d_h = 4 before the exercise; a pattern that uses it instead of W_Q.shape[-1] fails."""
    from qklab.checks.attention import check_attention_pattern

    def global_d_h(X, W_Q, W_K, causal=False):
        S = (X @ W_Q) @ (X @ W_K).transpose(-2, -1) / math.sqrt(4)
        if causal:
            S = S.masked_fill(torch.ones(S.shape[-1], S.shape[-1]).triu(1).bool(), -math.inf)
        return torch.softmax(S, dim=-1)

    _message(check_attention_pattern, global_d_h)
