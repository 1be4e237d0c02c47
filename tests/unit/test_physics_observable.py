"""lzflow physics with an observable-space background (accidentals): what applies is reported,
what does not is one note, and nothing looks the template up in the recoil-spectrum registry."""

import pytest

from lzflow.validation import observable_notes, physics_markdown, reference_count


def test_reference_count_of_accidentals_is_none_and_of_a_recoil_source_its_table():
    assert reference_count("accidentals") is None  # used to raise: unknown background 'accidentals'
    assert reference_count("Rn222") == 681.0  # the projection table (arXiv:1802.06039), as the registry has it
    with pytest.raises(ValueError, match="unknown background 'nope'"):
        reference_count("nope")


def test_markdown_reports_accidentals_roi_counts_outside_the_er_nr_totals_with_one_note():
    rows = [{"source": "B8", "recoil": "NR", "roi": 0.2, "below_nr_median": 0.1, "table": 0.36},
            {"source": "accidentals", "recoil": "accidental", "roi": 4.0, "below_nr_median": 2.97, "table": None}]
    tables = {"nr_efficiency": {"E10_keV": 2.5, "E50_keV": 4.0, "E90_keV": 7.0, "at": {"10": 0.9}},
              "backgrounds": rows, "nr_band_source": "wimp_m40", "notes": observable_notes(["B8", "accidentals"])}
    assert len(tables["notes"]) == 1 and tables["notes"][0].startswith("accidentals: a (cS1, log10 cS2) template")
    text = physics_markdown(tables)
    assert "| accidentals | accidental | – | 4 | 2.97 |" in text
    assert "| **NR total** | | 0.36 | 0.2 | 0.1 |" in text  # the accidentals' 4 events are in no recoil total
    assert "| **ER total** | | 0 | 0 | 0 |" in text
    assert text.count("Note: accidentals:") == 1
    assert "Note:" not in physics_markdown({**tables, "notes": observable_notes(["B8"])})
