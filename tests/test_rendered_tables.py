"""The results tables of README.md and docs/benchmarks.md are what their JSON gives (benchmarks/render_tables.py)."""

import json
import math

import pytest
from helpers import load_benchmark_script


@pytest.fixture(scope="module")
def render_tables():
    return load_benchmark_script("render_tables")


def test_every_table_in_the_docs_is_rendered_from_its_json(render_tables):
    names = set()
    for path in render_tables.DOCUMENTS:
        text = path.read_text()
        names |= {match.group("name") for match in render_tables.TABLE_PATTERN.finditer(text)}
        assert render_tables.render(text) == text, f"{path.name}: run `python benchmarks/render_tables.py`"
    # Every table the script knows is shown somewhere
    assert names == set(render_tables.TABLES)


def test_words_written_by_hand_carry_no_figures(render_tables):
    rows = (*render_tables.COUNTERFACTUAL_ROWS, *render_tables.EARLIER_ROWS, *render_tables.MEMORISE_ROWS)
    for row in (*rows, *render_tables.LONG_ROWS, *render_tables.CHECKER_ROWS):
        assert not any(character.isdigit() for character in row.note), row.note


def _sweep(seeds_first: int, rows: dict[str, list[float]], count: str = "2048") -> dict:
    runs = {name: {count: [{"reverse_kl": value} for value in values]} for name, values in rows.items()}
    return {"args": {"first_seed": seeds_first}, "runs": runs}


def test_a_paired_cell_is_the_mean_difference_over_seeds_with_its_t_interval(render_tables, tmp_path, monkeypatch):
    monkeypatch.setattr(render_tables, "RESULTS", tmp_path)
    # Seeds 0-2 in one file and 3 in another, merged by seed; the reference's best temperature per seed
    first = _sweep(0, {"gail": [1.0, 2.0, 3.0], "sft": [2.0, 2.5, 3.1], "sft_temperature_0.8": [1.5, 3.0, 3.2]})
    (tmp_path / "first.json").write_text(json.dumps(first))
    second = _sweep(3, {"gail": [1.0], "sft": [1.3], "sft_temperature_0.6": [1.4]})
    (tmp_path / "second.json").write_text(json.dumps(second))
    # A seed whose SFT was sampled at no other temperature has no best temperature: left out of the pair
    (tmp_path / "third.json").write_text(json.dumps(_sweep(4, {"gail": [1.0], "sft": [0.5]})))
    paired = render_tables.Paired("first+second+third:gail", "first+second+third:sft_best_temperature")
    result = paired.statistics()
    differences = [1.0 - 1.5, 2.0 - 2.5, 3.0 - 3.1, 1.0 - 1.3]
    assert result["seeds"] == [0, 1, 2, 3]
    assert result["differences"] == pytest.approx(differences)
    mean = sum(differences) / 4
    standard_deviation = math.sqrt(sum((d - mean) ** 2 for d in differences) / 3)
    half_width = 3.182446 * standard_deviation / 2  # t(0.975, 3 degrees of freedom)
    assert result["interval"] == pytest.approx([mean - half_width, mean + half_width], abs=1e-5)
    assert result["verdict"] == "better" and result["better_in"] == 4
    assert paired.cell("GAIL") == (
        f"GAIL: better in 4 of 4, reverse KL {mean:+.3f} [{mean - half_width:+.3f}, {mean + half_width:+.3f}]: "
        "**better**"
    )


def test_best_of_n_cells_count_a_higher_log_likelihood_as_better(render_tables, tmp_path, monkeypatch):
    monkeypatch.setattr(render_tables, "RESULTS", tmp_path)
    results = {
        str(seed): {"a": {"expert_log_likelihood": a}, "b": {"expert_log_likelihood": -2.0}}
        for seed, a in enumerate((-1.0, -1.5, -2.5))
    }
    (tmp_path / "bon.json").write_text(json.dumps({"results": results}))
    result = render_tables.Paired("bon:a", "bon:b", best_of_n=True).statistics()
    assert result["differences"] == [1.0, 0.5, -0.5] and result["better_in"] == 2
    assert result["verdict"] == "within noise"


def test_a_comparison_with_fewer_than_two_seeds_is_refused(render_tables, tmp_path, monkeypatch):
    monkeypatch.setattr(render_tables, "RESULTS", tmp_path)
    (tmp_path / "one.json").write_text(json.dumps(_sweep(0, {"gail": [1.0], "sft": [2.0]})))
    with pytest.raises(ValueError, match="fewer than 2 seeds"):
        render_tables.Paired("one:gail", "one:sft").statistics()


def test_render_replaces_only_the_text_between_the_markers(render_tables, monkeypatch):
    monkeypatch.setitem(render_tables.TABLES, "counterfactuals", lambda: "| new |")
    text = "before\n<!-- table: counterfactuals -->\n| old |\n| old |\n<!-- /table -->\nafter\n"
    assert render_tables.render(text) == "before\n<!-- table: counterfactuals -->\n| new |\n<!-- /table -->\nafter\n"
