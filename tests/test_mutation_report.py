"""The mutation-score report counts mutmut's verdicts the way the README says."""

import json

from tests import mutation_report


def _meta(root, path, codes):
    f = root / (path + ".meta")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"exit_code_by_key": codes}))


README = """# x

## Mutation testing

<details>

- `m.x_f__mutmut_3`: both spellings give the same float
- `m.x_f__mutmut_9`: claimed equivalent, but a test kills it

</details>

## Next section

- `m.x_f__mutmut_4`: outside the section, so not counted
"""


def test_scores_and_equivalents(tmp_path, capsys):
    mutants = tmp_path / "mutants"
    _meta(mutants, "pkg/a.py", {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": -24, "m.x_f__mutmut_3": 0,
                                "m.x_f__mutmut_4": 0, "m.x_f__mutmut_5": None, "m.x_f__mutmut_6": 33})
    _meta(mutants, "pkg/b.py", {"m.x_g__mutmut_1": 1, "m.x_g__mutmut_2": 3})
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert mutation_report.equivalent_names(readme) == {
        "m.x_f__mutmut_3": "both spellings give the same float",
        "m.x_f__mutmut_9": "claimed equivalent, but a test kills it"}

    assert mutation_report.main(["--mutants", str(mutants), "--readme", str(readme), "--survivors"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in out if line.startswith(("pkg/", "total"))}
    # a.py: 6 mutants, killed 1 + timeout 1, 1 equivalent, 1 survivor, 2 not run -> 2 / 3
    assert rows["pkg/a.py"] == ["6", "2", "1", "1", "1", "2", "66.7%"]
    assert rows["pkg/b.py"] == ["2", "2", "0", "0", "0", "0", "100.0%"]
    assert rows["total"] == ["8", "4", "1", "1", "1", "2", "80.0%"]
    assert out[-1].strip() == "m.x_f__mutmut_4"


def test_a_killed_mutant_listed_as_equivalent_fails_the_report(tmp_path, capsys):
    mutants = tmp_path / "mutants"
    _meta(mutants, "pkg/a.py", {"m.x_f__mutmut_9": 1})
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert mutation_report.main(["--mutants", str(mutants), "--readme", str(readme)]) == 1
    assert "m.x_f__mutmut_9" in capsys.readouterr().err


def test_no_run_yet_is_a_user_error(tmp_path, capsys):
    assert mutation_report.main(["--mutants", str(tmp_path / "none")]) == 2
    assert "run `mutmut run` first" in capsys.readouterr().err
