"""Chapter 7's hard exercise check: the reference passes, typical wrong answers fail with their label."""

import re

import pytest
import torch

from qklab.checks.core import ExerciseCheckError
from qklab.checks.snr import GENERAL_SNR_MISTAKES, check_general_snr
from qklab.theory import predicted_snr_general


def test_reference_and_an_equivalent_answer_pass(capsys):
    from qklab.theory import predicted_snr_general

    check_general_snr(predicted_snr_general)

    def via_symmetric_part(W, T):  # a right answer written differently: Var(x^T W x) through W_sym
        W = W.double()
        S = 0.5 * (W + W.T)
        tau = torch.arange(1, T + 1, dtype=torch.float64)
        var = 2 * tau**2 * (S * S).sum() + tau * (T - tau) * torch.trace(W @ W.T)
        return tau * torch.trace(W) / var.sqrt()

    check_general_snr(via_symmetric_part)
    assert "matches the reference" in capsys.readouterr().out


@pytest.mark.parametrize("mistake", GENERAL_SNR_MISTAKES, ids=lambda m: m.label)
def test_each_mistake_fails_and_is_named(mistake):
    with pytest.raises(ExerciseCheckError) as err:
        check_general_snr(mistake.fn)
    message = str(err.value)
    # a mistake is named, or (for the symmetric formula that yields NaN) the NaN is reported
    assert mistake.label in message or "nan" in message.lower(), message


def test_stub_and_wrong_shape():
    def stub(W, T):
        raise NotImplementedError("write snr_general")

    with pytest.raises(ExerciseCheckError, match="not implemented"):
        check_general_snr(stub)
    with pytest.raises(ExerciseCheckError):
        check_general_snr(lambda W, T: torch.zeros(T + 1, dtype=torch.float64))


def test_messages_never_hold_the_reference_values():
    from qklab.checks.core import reset_attempts

    reset_attempts()
    for mistake in GENERAL_SNR_MISTAKES:
        for attempt in range(2):  # the second failure adds the hint
            with pytest.raises(ExerciseCheckError) as err:
                check_general_snr(mistake.fn)
            case = err.value.case
            assert case is not None
            expected = predicted_snr_general(*case.args, **case.kwargs)  # the failing case's right output, computed here
            # the reader's own values may be shown ("yours is ..."); only the reference must not be
            message = re.sub(r"yours is -?[0-9.e+-]+", "", str(err.value))
            for v in expected.reshape(-1).tolist():
                for form in {f"{v:.3f}", f"{v:.4f}", f"{v:.4g}", f"{v:.6g}"}:
                    if len(form.lstrip("-").replace(".", "").lstrip("0")) >= 3:
                        assert form not in message, (form, message)
