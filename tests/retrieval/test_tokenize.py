from vimi.retrieval.tokenize import TextTokenizer, decode_text


def test_decode_text_accepts_clean_text_and_collapses_whitespace():
    assert decode_text("  A  blicket\n spins ") == ("A blicket spins", "")
    assert decode_text("un café".encode()) == ("un café", "")


def test_decode_text_names_the_problem():
    assert decode_text(None)[1] == "empty_text"
    assert decode_text("  \t ")[1] == "empty_text"
    assert decode_text(b"caf\xe9")[1].startswith("non_utf8_text")
    assert decode_text(b"\xff\xfe".decode("utf-8", "surrogateescape"))[1].startswith("non_utf8_text")
    assert decode_text(3.5)[1].startswith("not_text")


def test_tokenizer_keeps_made_up_names_drops_stopwords_and_stems():
    tokens = TextTokenizer("en", "english").tokenize("The Zorblax is running with two foxes")
    assert tokens == ["zorblax", "run", "two", "fox"]


def test_tokenizer_stopwords_and_stemming_can_be_disabled():
    tokens = TextTokenizer("", "").tokenize("The foxes are running")
    assert tokens == ["the", "foxes", "are", "running"]
    assert TextTokenizer("en", "english").config() == {"stopwords": "en", "stemmer": "english"}
