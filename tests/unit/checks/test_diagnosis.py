"""The diagnosis engine: how a wrong result differs from the expected one, in the student's words."""

import time

import numpy as np
import pytest
import torch

from course_utils import checks
from course_utils.checks import diagnosis
from course_utils.checks.diagnosis import diagnose, diagnose_dtype, diagnose_shape, format_diagnoses

TOL = {"rtol": 1e-5, "atol": 1e-8}
RNG = np.random.default_rng(0)
E = RNG.normal(size=(4, 6))  # a generic expected matrix: distinct values, both signs
TRAJECTORY = np.cumsum(RNG.random(8)) + 1.0  # a generic history, e.g. accumulated losses


def says(got, expected, **kwargs) -> list[str]:
    """``diagnose`` with the check's default tolerances."""
    return diagnose(got, expected, **{**TOL, **kwargs})


def first(got, expected, **kwargs) -> str:
    """The most specific diagnosis; fails the test if there is none."""
    found = says(got, expected, **kwargs)
    assert found, "expected a diagnosis, got none"
    return found[0]


# --- constant factors -------------------------------------------------------------------


def test_twice_the_expected_is_a_factor_of_two():
    """Is a result twice the expected one called a factor of 2 (a missing 1/2, a sum for a mean)?"""
    text = first(2 * E, E)
    assert "exactly 2x" in text and "missing 1/2" in text and "sum where a mean" in text


def test_half_the_expected_is_a_factor_of_one_half():
    """Is a result half the expected one (torch tensors) called half?"""
    text = first(torch.tensor(E / 2), torch.tensor(E))
    assert "exactly half" in text and "mean where a sum" in text


def test_number_of_entries_factor_is_a_sum_for_a_mean():
    """Is a result N times the expected one (N its number of entries) a sum where a mean is expected?"""
    x = RNG.normal(size=7)
    assert "7x" in first(7 * x, x) and "sum where a mean" in first(7 * x, x)


def test_one_over_n_is_a_mean_for_a_sum():
    """Is a result 1/N of the expected one a mean where a sum is expected?"""
    x = RNG.normal(size=7)
    text = first(x / 7, x)
    assert "1/7" in text and "mean where a sum" in text


def test_number_of_rows_factor_is_named():
    """Is a factor equal to the number of rows (samples) named as such?"""
    assert "number of rows" in first(E * 4, E)


def test_batch_size_factor_is_named():
    """With the batch size given, is a result batch_size times too big a sum over the batch?"""
    text = first(32 * E, E, batch_size=32)
    assert "32x" in text and "batch size" in text and "sum over the batch" in text


def test_one_over_batch_size_is_divided_twice():
    """Is a result 1/batch_size of the expected one a double division by the batch size?"""
    text = first(E / 32, E, batch_size=32)
    assert "1/32" in text and "batch size twice" in text


def test_any_other_constant_factor_is_named_with_its_value():
    """Is a result 3.2 times the expected one 'off by a constant factor of 3.2'?"""
    assert "off by a constant factor of 3.2" in first(3.2 * E, E)


def test_minus_the_expected_is_a_sign_flip():
    """Is the negated expected result a sign flip (gradient ascent instead of descent)?"""
    text = first(torch.tensor(-E), E)
    assert "sign flipped" in text and "gradient ascent" in text


def test_a_constant_offset_is_named():
    """Is a result off by the same constant in every entry (a missing bias) named with the constant?"""
    assert "same constant +0.5" in first(E + 0.5, E)


def test_an_all_zero_expected_array_gets_no_factor():
    """Does a wrong answer where zeros are expected avoid any 'factor' or 'sign' diagnosis?"""
    for found in (says(E, np.zeros_like(E)), says(E[0], np.zeros(6)), says(3.0, 0.0)):
        assert not any("factor" in d or "2x" in d or "sign" in d for d in found)


def test_a_factor_is_checked_with_the_check_tolerance():
    """Is a result that is 2x only up to noise above the tolerance not called a factor of 2?"""
    noisy = 2 * E + 1e-3 * RNG.normal(size=E.shape)
    assert not any("2x" in d for d in says(noisy, E))
    assert "2x" in first(noisy, E, rtol=1e-2)  # within a looser tolerance it is


# --- layout: axes, reshapes, order -------------------------------------------------------


def test_a_transposed_square_result_is_called_transposed():
    """Is a square result that equals the expected one transposed called transposed?"""
    square = RNG.normal(size=(5, 5))
    assert "transposed" in first(torch.tensor(square).T, square)


def test_a_transposed_shape_names_the_transpose_and_the_fix():
    """For a (3, 2) result where (2, 3) is expected, holding the transposed values, is that named?"""
    text = first(E.T, E)
    assert "transposed" in text and "only the axis order is wrong" in text


def test_permuted_axes_name_the_permutation_and_its_inverse():
    """Is a channels-last result of channels-first data named with the permutation that undoes it?"""
    x = RNG.normal(size=(2, 3, 4, 5))
    text = first(torch.tensor(x).permute(0, 2, 3, 1), x)
    assert "(0, 2, 3, 1)" in text and "`.permute(0, 3, 1, 2)`" in text


def test_a_wrong_shape_alone_names_the_permutation():
    """Without matching values, does a permuted shape still get the permutation from the shape?"""
    text = first(RNG.normal(size=(2, 4, 5, 3)), RNG.normal(size=(2, 3, 4, 5)))
    assert "permuted as (0, 2, 3, 1)" in text and "`.permute(0, 3, 1, 2)`" in text


def test_view_where_permute_is_needed_is_named():
    """Is `x.view(...)` where `x.permute(...)` is expected (same values, read in another order) named?"""
    x = torch.tensor(RNG.normal(size=(2, 3, 4)))
    text = first(x.view(2, 4, 3), x.permute(0, 2, 1))
    assert "`view` / `reshape` where `permute` / `transpose` is needed" in text


def test_permute_where_reshape_is_needed_is_named():
    """Is `x.permute(...)` where `x.reshape(...)` is expected named as axes moved?"""
    x = torch.tensor(RNG.normal(size=(2, 3, 4)))
    text = first(x.permute(0, 2, 1), x.reshape(2, 4, 3))
    assert "`permute` / `transpose` where a plain `reshape` / `view` is expected" in text


def test_right_values_in_the_wrong_shape_only_need_a_reshape():
    """Are the right values in the right order, in another shape, told to reshape?"""
    text = first(E.reshape(6, 4), E)
    assert "only the shape is wrong" in text and "`.reshape(4, 6)`" in text


def test_rows_in_another_order_are_named():
    """Are the right rows in a different order (shuffled samples) called reordered rows?"""
    assert "right rows in a different order" in first(E[[2, 0, 3, 1]], E)


def test_columns_in_another_order_are_named():
    """Are the right columns in a different order (swapped classes) called reordered columns?"""
    assert "right columns in a different order" in first(E[:, [1, 0, 2, 3, 5, 4]], E)


def test_scrambled_entries_are_named():
    """Are the right values in scrambled positions called scrambled?"""
    scrambled = RNG.permutation(E.ravel()).reshape(E.shape)
    assert "scrambled" in first(scrambled, E)


def test_few_distinct_values_in_other_places_are_not_called_scrambled():
    """Is a wrong one-hot matrix (the same 0s and 1s elsewhere) not called scrambled or reordered?"""
    expected = np.eye(4)[[0, 1, 2, 3, 0, 1]]
    got = np.eye(4)[[1, 1, 2, 0, 0, 3]]
    assert not any("scrambled" in d or "order" in d for d in says(got, expected))


# --- trajectories -----------------------------------------------------------------------


def test_one_step_ahead_is_a_shifted_trajectory():
    """Is a history whose entry t is the expected entry t+1 (loss recorded after the update) named?"""
    got = np.r_[TRAJECTORY[1:], TRAJECTORY[-1] + 1]
    text = first(got, TRAJECTORY)
    assert "shifted by one step" in text and "after the update" in text


def test_one_step_behind_is_a_shifted_trajectory():
    """Is a history whose entry t+1 is the expected entry t called shifted by one step?"""
    assert "shifted by one step" in first(torch.tensor(np.r_[0.0, TRAJECTORY[:-1]]), TRAJECTORY)


def test_a_history_without_its_first_entry_is_named():
    """Is a history one entry short, missing the initial value, named as such?"""
    assert "without its first entry" in first(TRAJECTORY[1:], TRAJECTORY)


def test_a_history_with_an_extra_first_entry_is_named():
    """Is a history with the initial value recorded as well named as an extra first entry?"""
    assert "extra first entry" in first(np.r_[9.0, TRAJECTORY], TRAJECTORY)


def test_a_history_one_step_short_is_named():
    """Is a history that stops one entry early named as missing its last entry?"""
    assert "without its last entry" in first(TRAJECTORY[:-1], TRAJECTORY)


def test_unchanged_from_initial_is_an_update_never_applied():
    """Is a result equal to the given initial value an update never applied (or applied to a copy)?"""
    initial = np.ones_like(E)
    text = first(initial.copy(), E, initial=initial)
    assert "unchanged from the initial value" in text and "copy" in text


def test_unchanged_is_preferred_over_all_zeros():
    """When the initial value was zeros, is 'unchanged' named alone, not also 'all zeros'?"""
    zeros = np.zeros_like(E)
    found = says(zeros, E, initial=zeros)
    assert len(found) == 1 and "unchanged" in found[0]


def test_an_all_zero_result_is_named():
    """Is an all-zero result where values are expected called nothing computed or accumulated?"""
    assert "all zeros" in first(torch.zeros(4, 6), E)


# --- ReLU --------------------------------------------------------------------------------


def test_negative_values_clipped_at_zero_are_a_relu_too_many():
    """Is max(expected, 0) named as a ReLU applied where it should not be?"""
    text = first(np.maximum(E, 0), E)
    assert "clipped at zero" in text and "ReLU" in text


def test_negative_values_where_zeros_are_expected_are_a_missing_relu():
    """Is a result whose ReLU is the expected one named as a missing ReLU / clamp?"""
    text = first(torch.tensor(E), np.maximum(E, 0))
    assert "ReLU / clamp missing" in text


# --- only some rows or columns -----------------------------------------------------------


def test_only_row_zero_differs():
    """Is a result that is wrong in row 0 only told 'only row 0 differs'?"""
    got = E.copy()
    got[0] += 1
    assert first(got, E) == "only row 0 differs; the others match"


def test_only_the_last_column_differs():
    """Is a result wrong in its last column only told 'only the last column differs'?"""
    got = E.copy()
    got[:, -1] *= 3
    assert first(got, E) == "only the last column differs; the others match"


def test_several_rows_are_listed():
    """Are several wrong rows listed by index?"""
    got = E.copy()
    got[[1, 3]] += 1
    assert first(got, E) == "rows 1, 3 differ; the others match"


def test_a_single_wrong_entry_is_located():
    """Is a matrix with a single wrong entry told which entry?"""
    got = E.copy()
    got[2, 4] = 7.0
    assert first(got, E) == "only the entry at (2, 4) differs; the others match"


# --- NaN and inf -------------------------------------------------------------------------


def test_nan_is_located_and_explained():
    """Is the first NaN located by index, with its usual causes?"""
    got = E.copy()
    got[1, 2] = got[3, 0] = np.nan
    found = says(got, E)
    assert found[0] == "the first NaN is at index (1, 2) (2 of 24 entries are NaN or inf)"
    assert any("0/0" in d and "learning rate" in d for d in found)


def test_inf_points_at_an_overflow_in_exp():
    """Is +inf explained as an overflow in exp, with the max-subtraction trick?"""
    got = torch.tensor([1.0, 2.0]).exp()
    got[1] = float("inf")
    assert any("max-subtraction trick" in d for d in says(got, [np.e, np.e**2]))


def test_minus_inf_points_at_the_log_of_zero():
    """Is -inf explained as the log of 0?"""
    assert any("log of 0" in d for d in says([np.log(0.5), -np.inf], np.log([0.5, 0.25])))


def test_a_growing_trajectory_that_turns_nan_diverged():
    """Is a loss history that grows and then turns NaN called a diverged training (learning rate)?"""
    losses = np.r_[np.exp(np.arange(5.0) * 3), np.nan, np.nan]
    assert any("diverged" in d and "learning rate" in d for d in says(losses, np.ones(7)))


def test_a_nan_scalar_gets_causes_but_no_location():
    """Does a NaN number get its causes without a pointless 'at index ()'?"""
    found = says(float("nan"), 1.0)
    assert found and not any("index" in d for d in found) and "0/0" in found[0]


# --- shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("got", "expected", "words"),
    [
        ((3, 2), (2, 3), "the shape is transposed"),
        ((5, 1), (5,), "`keepdim=True`"),
        ((5,), (5, 1), "without `keepdim=True`"),
        ((5, 5), (5,), "broadcasting a column (N, 1)"),
        ((5, 5), (5, 1), "broadcasting a column (N, 1)"),
        ((), (5,), "a reduction over everything"),
        ((1, 4, 3), (4, 3), "axis of size 1"),
        ((4, 3, 2), (4, 3), "extra axis 2 of size 2"),
        ((4,), (4, 3), "axis 1 (size 3) of the expected result is missing"),
        ((9,), (10,), "one entry fewer along axis 0"),
        ((6, 2), (3, 4), "the same 12 entries in a different shape"),
    ],
)
def test_a_wrong_shape_names_its_likely_cause(got, expected, words):
    """Does each classic wrong shape (transpose, keepdim, broadcast, reduction, off-by-one) get its cause?"""
    found = diagnose_shape(got, expected)
    assert len(found) == 1 and words in found[0]


def test_equal_or_unrelated_shapes_get_no_shape_diagnosis():
    """Do equal shapes, and shapes with nothing in common, get no shape diagnosis?"""
    assert diagnose_shape((2, 3), (2, 3)) == [] and diagnose_shape((7,), (2, 3)) == []


def test_the_broadcast_square_is_confirmed_by_its_diagonal():
    """Is an (N, N) result whose diagonal is the expected (N,) named as a broadcast column?"""
    pred, y = RNG.normal(size=5), RNG.normal(size=5)
    assert "diagonal of your result is the expected answer" in first(pred[:, None] - y, pred - y)


def test_a_missing_reduction_is_named_with_its_call():
    """Is a result whose mean over axis 1 is the expected one told that `.mean(dim=1)` is missing?"""
    assert first(torch.tensor(E), E.mean(axis=1)).startswith("`.mean(dim=1)` of your result")


def test_per_sample_losses_where_the_mean_is_expected():
    """Are per-sample losses where their mean is expected told that `.mean()` is missing?"""
    losses = RNG.random(10)
    assert first(losses, losses.mean()).startswith("`.mean()` of your result")


def test_a_reduction_too_many_is_named():
    """Is the sum of the expected values, where one per entry is expected, a reduction too many?"""
    assert "reduction too many" in first(E.sum(axis=0), E)


def test_constant_values_in_another_shape_let_the_shape_speak():
    """Do zeros of a transposed shape get the shape diagnosis, not a claim about their layout?"""
    assert says(np.zeros((3, 2)), np.zeros((2, 3))) == [diagnose_shape((3, 2), (2, 3))[0]]


# --- dtypes ------------------------------------------------------------------------------


def test_an_integer_result_where_floats_are_expected_is_integer_division():
    """Is an integer tensor where floats are expected named as integer division / a tensor of ints?"""
    found = says(torch.tensor([0, 1, 2]), torch.tensor([0.5, 1.5, 2.5]))
    assert "integer dtype (int64)" in found[0] and "`//`" in found[0]


def test_an_integer_result_is_not_blamed_where_whole_numbers_are_expected():
    """Is an integer result where the expected floats are whole numbers (counts) not called integer division?"""
    assert not any("integer" in d for d in says(torch.tensor([1, 3]), [1.0, 2.0]))
    assert diagnose_dtype(torch.int64, torch.float32, whole_numbers_expected=True) == []


def test_a_boolean_result_is_an_unconverted_comparison():
    """Is a boolean result where a rate is expected named as a comparison left unconverted?"""
    assert "comparison" in diagnose_dtype(torch.bool, torch.float32)[0]


def test_float32_rounding_is_named_only_when_the_error_is_rounding():
    """Is float32 against float64 named when, and only when, the differences are float32 rounding?"""
    x = RNG.normal(size=100)
    rounded = torch.tensor(x, dtype=torch.float32)
    assert any("float32 rounding" in d for d in diagnose(rounded, x, rtol=1e-10, atol=0))
    assert not any("float32" in d for d in diagnose(rounded * 1.5, x, rtol=1e-10, atol=0))


def test_float64_where_float32_is_expected_says_how_to_convert():
    """Is a float64 result where float32 is expected told to convert (NumPy arrays are float64)?"""
    found = diagnose_dtype(np.float64, torch.float32)
    assert found and "`.to(torch.float32)`" in found[0] and "from_numpy" in found[0]


def test_same_or_unknown_dtypes_get_no_dtype_diagnosis():
    """Do equal dtypes, and dtypes this module does not know, get no dtype diagnosis?"""
    assert diagnose_dtype(torch.float32, np.float32) == []
    assert diagnose_dtype("no-such-dtype", np.float64) == []
    assert diagnose_dtype(torch.float64, torch.int64) == []  # floats holding counts: no mistake by itself


# --- what must not be diagnosed ----------------------------------------------------------


def test_a_result_within_tolerance_gets_no_diagnosis():
    """Does a correct result, different only within the tolerance, get no diagnosis at all?"""
    assert says(E * (1 + 1e-7), E) == []
    assert says(torch.tensor(E, dtype=torch.float32), E, rtol=1e-5, atol=1e-6) == []


def test_a_random_wrong_answer_gets_no_specific_diagnosis():
    """Does an unrelated wrong answer get no diagnosis, rather than a made-up one?"""
    for _ in range(20):
        assert says(RNG.normal(size=E.shape), E) == []
        assert says(RNG.normal(size=10), RNG.normal(size=10)) == []


def test_a_wrong_number_gets_no_arbitrary_factor():
    """Is a wrong single number not 'off by a constant factor' (every pair of numbers is)?"""
    assert says(3.7, 1.3) == []


def test_several_signatures_give_one_consistent_diagnosis():
    """When several signatures hold (2x of a batch of 2), is only the most specific named?"""
    assert says(2 * E, E, batch_size=2) == [first(2 * E, E)]


# --- robustness and cost -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("got", "expected"),
    [
        ("abc", [1.0]),
        (None, [1.0]),
        ([[1.0], [2.0, 3.0]], [1.0]),
        (np.array([1 + 1j]), [1.0]),
        (torch.ones(2, dtype=torch.complex64), [1.0, 1.0]),
        (np.zeros(0), np.zeros(0)),
        (np.zeros((0, 3)), np.zeros((3, 0))),
        (torch.ones(2, requires_grad=True) * 3, [1.0, 1.0]),
    ],
)
def test_odd_inputs_never_raise(got, expected):
    """Does diagnose return a list, never raise, for inputs it cannot compare?"""
    assert isinstance(diagnose(got, expected, rtol=1e-5, atol=1e-8, initial=[[1]], batch_size=3), list)


def test_unknown_objects_are_not_inspected():
    """Is an object that is not an array, tensor, number or list left alone (no attribute read, no conversion)?"""
    touched = []

    class Probe:
        def __getattr__(self, name):
            touched.append(name)
            raise AttributeError(name)

        def __array__(self, dtype=None, copy=None):
            touched.append("__array__")
            return np.zeros(3)

    assert diagnose(Probe(), np.ones(3), rtol=1e-5, atol=1e-8, initial=Probe()) == []
    assert touched == []


def test_a_signature_that_raises_is_skipped(monkeypatch):
    """Is a signature whose test raises skipped, with the next one still tried?"""

    def broken(case):
        raise ValueError("broken signature")

    monkeypatch.setattr(diagnosis, "_SAME_SHAPE", (diagnosis._Signature(broken, "never"), *diagnosis._SAME_SHAPE))
    assert "exactly 2x" in first(2 * E, E)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda big: RNG.normal(size=big.shape), None),
        (lambda big: big.T, "transposed"),
        (lambda big: RNG.permutation(big.ravel()).reshape(big.shape), "scrambled"),
        (lambda big: np.hstack([big[:, :-1], big[:, -1:] + 1]), "only the last column differs"),
    ],
)
def test_a_million_entries_are_diagnosed_fast(make, words):
    """Is a 1000 x 1000 result diagnosed (or found unremarkable) in well under the time of a check?"""
    big = RNG.normal(size=(1000, 1000))
    got = make(big)
    start = time.perf_counter()
    found = says(got, big)
    assert time.perf_counter() - start < 3.0  # about 0.5 s at most on one core
    assert found == [] if words is None else words in found[0]


# --- check_close ---------------------------------------------------------------------------


def test_check_close_names_the_listed_mistake_alone():
    """A listed mistake matched: is it the whole diagnosis (a generic cause could contradict it)?"""
    with pytest.raises(checks.CheckError) as err:
        checks.check_close("grad", 2 * E, E, mistakes={"forgot the 1/2 of the squared error": 2 * E})
    message = str(err.value)
    assert "known mistake: forgot the 1/2" in message and "Likely cause" not in message
    with pytest.raises(checks.CheckError, match="Likely cause: your result is exactly 2x"):
        checks.check_close("grad", 2 * E, E, mistakes={"something else": 3 * E})


def test_check_close_diagnoses_a_wrong_shape():
    """Does a shape mismatch in check_close get the engine's diagnosis (here: transposed values)?"""
    with pytest.raises(
        checks.CheckError, match=r"expected shape \(4, 6\), got shape \(6, 4\)\.\nLikely cause: .*transposed"
    ):
        checks.check_close("scores", torch.tensor(E).T, E)


def test_check_close_passes_initial_and_batch_size_through():
    """Do check_close's `initial` and `batch_size` reach the engine?"""
    with pytest.raises(checks.CheckError, match="unchanged from the initial value"):
        checks.check_close("w", np.ones(3), [1.0, 2.0, 3.0], initial=np.ones(3))
    with pytest.raises(checks.CheckError, match="8 being the batch size"):
        checks.check_close("grad", 8 * E, E, batch_size=8)


def test_check_close_locates_nan_after_its_own_message():
    """Does check_close's NaN message gain where the NaN starts?"""
    got = np.r_[1.0, 2.0, np.nan]
    with pytest.raises(checks.CheckError, match=r"(?s)holds NaN or inf.*first NaN is at index \(2,\)"):
        checks.check_close("losses", got, [1.0, 2.0, 3.0])


def test_check_close_adds_nothing_without_a_diagnosis():
    """Is an unremarkable wrong answer reported without a 'Likely cause' line?"""
    with pytest.raises(checks.CheckError) as err:
        checks.check_close("y", RNG.normal(size=(3, 3)), RNG.normal(size=(3, 3)))
    assert "Likely cause" not in str(err.value)


def test_diagnoses_are_formatted_as_one_line_or_a_list():
    """Is one diagnosis a 'Likely cause:' line and several a bulleted 'Likely causes:' list?"""
    assert format_diagnoses([]) == ""
    assert format_diagnoses(["a"]) == "\nLikely cause: a."
    assert format_diagnoses(["a", "b"]) == "\nLikely causes:\n  - a.\n  - b."
