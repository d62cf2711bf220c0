"""Local knowledge-base chunking and keyword tokens on customer-shaped text (no model, no server)."""

from __future__ import annotations

import pytest

from localaws.knowledge import HEADING_MAX_WORDS, KnowledgeIndex, _Bm25, chunk_text, tokenize


def fixed(max_tokens: int, overlap: int = 20) -> dict:
    return {"chunkingStrategy": "FIXED_SIZE",
            "fixedSizeChunkingConfiguration": {"maxTokens": max_tokens, "overlapPercentage": overlap}}


def sentence(label: str, words: int) -> str:
    return " ".join(f"{label}{i}" for i in range(words - 1)) + f" {label}-end."


def is_heading(line: str) -> bool:
    words = line.split()
    return bool(words) and words[-1].endswith(":") and len(words) <= HEADING_MAX_WORDS


# A customer-shaped section: free-form sub-headings on their own line, prose, numbered steps, a spec list.
LONG_SECTION = "\n".join([
    "Safety_instructions:",
    "General Safety Precautions:",
    sentence("general", 34),
    sentence("ppe", 22),
    "",
    "Electrical Safety:",
    sentence("electric", 30),
    "Lockout/Tagout Procedure:",
    *(f"{n}. " + sentence(f"step{n}x", 11) for n in range(1, 8)),
    "",
    "Technical Specifications:",
    "Rated power: 7.5 kW",
    "Supply voltage: 400 V",
    "Filter cartridge: TW-AD340-FLT-02",
    sentence("closing", 40),
    "Emergency Stop:",
    sentence("estop", 26),
])


@pytest.mark.parametrize("max_tokens", [30, 45, 60, 120])
def test_chunks_keep_the_fixed_size_contract_and_cover_every_word_in_order(max_tokens: int) -> None:
    chunks = chunk_text(LONG_SECTION, fixed(max_tokens))
    words = LONG_SECTION.split()
    assert all(len(c.split()) <= max_tokens for c in chunks)
    position = 0  # each chunk starts inside (or right after) the previous one and they end at the last word
    for previous, chunk in zip(chunks, chunks[1:], strict=False):
        head = previous.split()
        overlap = len(head) * 20 // 100
        assert chunk.split()[:overlap] == head[len(head) - overlap:]  # the overlap is respected
    for chunk in chunks:
        chunk_words = chunk.split()
        found = next(i for i in range(position, len(words)) if words[i : i + len(chunk_words)] == chunk_words)
        position = found + 1
    assert chunks[0].split()[0] == words[0] and chunks[-1].split()[-1] == words[-1]


@pytest.mark.parametrize("max_tokens", [30, 45, 60, 120])
def test_a_sub_heading_is_never_the_last_line_of_a_chunk(max_tokens: int) -> None:
    chunks = chunk_text(LONG_SECTION, fixed(max_tokens))
    assert len(chunks) > 1
    for chunk in chunks[:-1]:
        assert not is_heading(chunk.splitlines()[-1]), chunk
    for heading in ("Electrical Safety:", "Lockout/Tagout Procedure:", "Technical Specifications:"):
        # every heading sits in some chunk together with the start of the text it introduces
        assert any(heading in c.splitlines()[:-1] for c in chunks), heading


def test_a_window_ending_right_after_a_heading_moves_the_cut_before_it() -> None:
    """Plain word windows (today's behaviour) would end chunk 1 with 'Electrical Safety:' and start chunk 2 with
    its text."""
    text = "\n".join([sentence("a", 12), sentence("b", 12), sentence("c", 14), "Electrical Safety:",
                      sentence("d", 20)])
    assert " ".join(text.split()[:40]).endswith("Electrical Safety:")  # where a plain 40-word cut lands
    chunks = chunk_text(text, fixed(40))
    assert chunks[0].splitlines()[-1] == sentence("c", 14)
    assert chunks[1].splitlines()[-2:] == ["Electrical Safety:", sentence("d", 20)]


def test_cuts_fall_on_line_and_paragraph_boundaries() -> None:
    first = [sentence(f"a{k}x", 10) for k in range(4)]  # a 40-word paragraph
    second = [sentence(f"b{k}x", 5) for k in range(4)]
    third = [sentence(f"c{k}x", 9) for k in range(6)]
    text = "\n\n".join("\n".join(p) for p in (first, second, third))
    chunks = chunk_text(text, fixed(50))
    # a paragraph break near the window's end wins over the later line breaks at 45 and 50 words
    assert chunks[0] == "\n".join(first)
    for chunk in chunks:
        assert chunk.splitlines()[-1] in first + second + third  # ends with a whole line, never mid-line
    assert "\n\n" in chunks[1]  # paragraph breaks are kept in the chunk text


def test_a_long_paragraph_is_cut_at_a_sentence_end_near_the_window_end() -> None:
    paragraph = " ".join(sentence(f"s{k}x", 8) for k in range(10))  # one 80-word line of 8-word sentences
    chunks = chunk_text("Introduction:\n" + paragraph, fixed(50))
    assert chunks[0].endswith("s5x-end.") and len(chunks[0].split()) == 49  # the heading and six sentences
    assert all(c.split()[-1].endswith(".") for c in chunks)


def test_one_long_line_is_cut_into_the_same_word_windows_as_before() -> None:
    words = [f"w{i}" for i in range(1000)]
    chunks = chunk_text(" ".join(words), fixed(100, 20))
    expected = [" ".join(words[s : s + 100]) for s in range(0, 1000, 80)]  # 13 windows, the last one short
    assert chunks == expected


def test_a_line_longer_than_the_window_is_cut_between_words() -> None:
    text = "Description:\n" + sentence("x", 130) + "\nOperation:\n" + sentence("y", 10)
    chunks = chunk_text(text, fixed(50))
    assert all(len(c.split()) <= 50 for c in chunks)
    assert chunks[0].startswith("Description:\nx0 x1") and len(chunks[0].split()) == 50
    assert not any(is_heading(c.splitlines()[-1]) for c in chunks[:-1])


def test_no_chunking_and_blank_text() -> None:
    assert chunk_text("  \n\n ", fixed(50)) == []
    assert chunk_text("Title:\nbody", {"chunkingStrategy": "NONE"}) == ["Title:\nbody"]


# --- keyword tokens ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rated power: 7.5 kW", ["rated", "power", "7", "5", "kw"]),
        ("Überdruck-Ventil", ["überdruck", "ventil"]),
        ("STRASSE Straße", ["strasse", "strasse"]),  # casefolded, not just lower-cased
        ("ДАВЛЕНИЕ масла", ["давление", "масла"]),
        ("温度センサー 3 bar", ["温度センサー", "3", "bar"]),
        ("café naïve", ["café", "naïve"]),
        ("snake_case TW-AD340-FLT-02", ["snake", "case", "tw", "ad340", "flt", "02"]),
    ],
)
def test_tokenize_is_unicode_aware(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_keyword_search_matches_non_latin_questions() -> None:
    """With ASCII-only tokens a Cyrillic or accented question had no terms at all: every BM25 score was 0."""
    bm25 = _Bm25(["Давление масла 280 бар", "Überdruckventil prüfen", "Oil pressure 280 bar"])
    russian = bm25.scores("давление масла")
    german = bm25.scores("ÜBERDRUCKVENTIL")
    assert russian[0] > 0 and russian[1] == russian[2] == 0
    assert german[1] > 0 and german[0] == german[2] == 0
    assert len(KnowledgeIndex()) == 0
