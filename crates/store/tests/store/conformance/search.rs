//! Full-text search: ranking, query syntax, and who may read what.

use super::*;

kbsync_kit::on_both_databases!(
    search_ranks_document_mentioning_term_more_often_higher,
    a_word_in_more_chunks_than_the_search_depth_ranks_only_the_newest_matches,
    the_search_depth_counts_only_chunks_the_reader_may_read,
    search_ignores_diacritics,
    search_treats_query_syntax_characters_as_plain_text,
    search_query_without_words_returns_nothing,
    search_matches_any_query_word_and_ranks_chunks_with_every_word_first,
    a_chunk_matching_more_or_rarer_query_words_ranks_first,
    a_chunk_holding_the_query_as_a_phrase_ranks_above_one_with_the_words_apart,
    stop_words_are_ignored_unless_the_query_has_nothing_else,
    a_quoted_phrase_matches_only_as_a_phrase,
    a_rare_word_is_ranked_in_full_when_a_common_word_exceeds_the_search_depth,
    retrieve_returns_whole_chunks_ranked_with_offsets,
    retrieve_returns_neighbouring_chunks_on_request,
    retrieve_filters_by_access_like_search,
    search_returns_only_readable_kbs,
    search_kb_ids_filter_narrows_but_never_widens_access,
    search_returns_one_hit_per_document,
    search_snippet_is_plain_short_text_around_the_match,
    search_hit_names_kb_document_and_web_url,
    search_respects_limit,
    search_skips_documents_not_processed,
);

async fn search_ranks_document_mentioning_term_more_often_higher(s: Arc<dyn Store>) {
    let owner = user(&*s, "rank@example.com", Role::User).await;
    let k = kb(&*s, owner, "rank").await;
    let once = indexed(
        &*s,
        k,
        "/once",
        &["the budget was discussed once with several other topics"],
    )
    .await;
    let often = indexed(
        &*s,
        k,
        "/often",
        &["budget budget budget: the budget was discussed again"],
    )
    .await;
    let hits = s.search(q("budget", Reader::Admin)).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.document_id).collect::<Vec<_>>(),
        vec![often, once]
    );
    assert!(hits[0].score > hits[1].score, "{hits:?}");
}

async fn a_word_in_more_chunks_than_the_search_depth_ranks_only_the_newest_matches(s: Arc<dyn Store>) {
    let owner = user(&*s, "depth@example.com", Role::User).await;
    let k = kb(&*s, owner, "depth").await;
    // The best match for "budget", but indexed first: older than SEARCH_DEPTH newer matches.
    let oldest = indexed(&*s, k, "/oldest", &["budget budget budget budget zebra"]).await;
    let depth = usize::try_from(kbsync_store::SEARCH_DEPTH).unwrap();
    let filler: Vec<String> = (0..depth)
        .map(|i| format!("the budget line {i} of a long ledger"))
        .collect();
    let ledger = indexed(
        &*s,
        k,
        "/ledger",
        &filler.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let newest = indexed(&*s, k, "/newest", &["budget budget review"]).await;

    // More than SEARCH_DEPTH chunks match: the oldest one is not ranked.
    assert_eq!(
        search_ids(&*s, q("budget", Reader::Admin)).await,
        vec![newest, ledger]
    );
    // A word in few chunks is ranked exactly, however old they are.
    assert_eq!(search_ids(&*s, q("zebra", Reader::Admin)).await, vec![oldest]);
    // OR semantics: the rare word's old match is ranked in full (first: it holds both words),
    // next to the newest matches of the common word.
    let both = search_ids(&*s, q("budget zebra", Reader::Admin)).await;
    assert_eq!(both.first(), Some(&oldest), "{both:?}");
    assert!(both.contains(&newest), "{both:?}");
}

async fn the_search_depth_counts_only_chunks_the_reader_may_read(s: Arc<dyn Store>) {
    let reader = user(&*s, "small-tenant@example.com", Role::User).await;
    let other = user(&*s, "big-tenant@example.com", Role::User).await;
    let mine = kb(&*s, reader, "small").await;
    let theirs = kb(&*s, other, "big").await;
    // The reader's one match is older than more than SEARCH_DEPTH matches it may not read.
    let old = indexed(
        &*s,
        mine,
        "/minutes",
        &["the quarterly budget of the small tenant"],
    )
    .await;
    let depth = usize::try_from(kbsync_store::SEARCH_DEPTH).unwrap();
    let newer: Vec<String> = (0..depth + 500)
        .map(|i| format!("budget line {i} of the other tenant"))
        .collect();
    let ledger = indexed(
        &*s,
        theirs,
        "/ledger",
        &newer.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;

    assert_eq!(
        search_ids(&*s, q("budget", Reader::User(reader))).await,
        vec![old]
    );
    let narrowed = [mine];
    assert_eq!(
        search_ids(
            &*s,
            SearchQuery {
                kb_ids: &narrowed,
                ..q("budget", Reader::User(reader))
            }
        )
        .await,
        vec![old]
    );
    assert_eq!(
        search_ids(&*s, q("budget", Reader::User(other))).await,
        vec![ledger]
    );
}

async fn search_ignores_diacritics(s: Arc<dyn Store>) {
    let owner = user(&*s, "dia@example.com", Role::User).await;
    let k = kb(&*s, owner, "dia").await;
    let umlaut = indexed(&*s, k, "/de", &["Die Übergabe der Schlüssel erfolgt am Montag"]).await;
    let plain = indexed(&*s, k, "/fr", &["Le cafe est ferme"]).await;
    assert_eq!(search_ids(&*s, q("ubergabe", Reader::Admin)).await, vec![umlaut]);
    assert_eq!(search_ids(&*s, q("ÜBERGABE", Reader::Admin)).await, vec![umlaut]);
    assert_eq!(search_ids(&*s, q("schlussel", Reader::Admin)).await, vec![umlaut]);
    assert_eq!(search_ids(&*s, q("café fermé", Reader::Admin)).await, vec![plain]);
}

async fn search_treats_query_syntax_characters_as_plain_text(s: Arc<dyn Store>) {
    let owner = user(&*s, "syn@example.com", Role::User).await;
    let k = kb(&*s, owner, "syn").await;
    let d = indexed(&*s, k, "/s", &["alpha beta gamma delta"]).await;
    let nasty = [
        "\"",
        "\"alpha",
        "alpha\"",
        "*",
        "alpha*",
        "alpha OR",
        "OR alpha",
        "alpha OR zulu",
        "-alpha",
        "alpha -beta",
        "NEAR(",
        "NEAR(alpha beta)",
        "alpha AND",
        "NOT alpha",
        "(",
        ")",
        "alpha)",
        "{",
        "alpha:",
        "text:alpha",
        "^alpha",
        "alpha & beta",
        "alpha | zulu",
        "!alpha",
        "alpha <-> beta",
        "'",
        "alpha'",
        "\\",
        "alpha\\",
        "%",
        "_",
        ";",
        "alpha; DROP TABLE chunks; --",
        ":*",
        "alpha:*",
        "+alpha",
        "alpha~",
        "[alpha]",
        "\u{0}",
        "alpha\u{0}beta",
        "\u{0345}",
        "\u{0903}",
        "alpha\u{0301}",
        "²",
        "ǅ",
        "\u{FFFF}",
    ];
    for text in nasty {
        let result = s.search(q(text, Reader::Admin)).await;
        assert!(result.is_ok(), "query {text:?} failed: {result:?}");
    }
    // Operators are words like any other (any word matches; "or" is a stop word), and
    // operators never act: `zulu` is in no chunk, `-beta` does not exclude.
    assert_eq!(search_ids(&*s, q("alpha OR zulu", Reader::Admin)).await, vec![d]);
    assert_eq!(
        search_ids(&*s, q("\"alpha\" -beta*", Reader::Admin)).await,
        vec![d]
    );
    assert!(
        search_ids(&*s, q("zulu -alpha", Reader::Admin))
            .await
            .contains(&d)
    );
    assert_eq!(
        search_ids(&*s, q("(alpha) & [gamma]", Reader::Admin)).await,
        vec![d]
    );
    let or_doc = indexed(&*s, k, "/or", &["near or not, alpha stays"]).await;
    // Both hold "alpha"; only one holds "near" too.
    assert_eq!(
        search_ids(&*s, q("NEAR(alpha OR)", Reader::Admin)).await,
        vec![or_doc, d]
    );
}

async fn search_query_without_words_returns_nothing(s: Arc<dyn Store>) {
    let owner = user(&*s, "empty@example.com", Role::User).await;
    let k = kb(&*s, owner, "empty").await;
    indexed(&*s, k, "/e", &["anything at all"]).await;
    for text in ["", "   ", "!!!", "*", "\"\"", "- ( ) :", "\t\n"] {
        assert!(
            s.search(q(text, Reader::Admin)).await.unwrap().is_empty(),
            "{text:?}"
        );
    }
}

async fn search_matches_any_query_word_and_ranks_chunks_with_every_word_first(s: Arc<dyn Store>) {
    let owner = user(&*s, "and@example.com", Role::User).await;
    let k = kb(&*s, owner, "and").await;
    let both = indexed(&*s, k, "/both", &["red apples and green pears"]).await;
    let one = indexed(&*s, k, "/one", &["red cars only"]).await;
    let pears = indexed(&*s, k, "/pears", &["pears in a bowl"]).await;
    indexed(&*s, k, "/none", &["blue boats"]).await;
    let hits = search_ids(&*s, q("red pears", Reader::Admin)).await;
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(hits[0], both);
    assert!(hits.contains(&one) && hits.contains(&pears));
    let mut red = search_ids(&*s, q("RED", Reader::Admin)).await;
    red.sort();
    let mut expected = vec![both, one];
    expected.sort();
    assert_eq!(red, expected);
}

async fn a_chunk_matching_more_or_rarer_query_words_ranks_first(s: Arc<dyn Store>) {
    let owner = user(&*s, "rare@example.com", Role::User).await;
    let k = kb(&*s, owner, "rare").await;
    // "report" is common, "okapi" rare.
    for i in 0..6 {
        indexed(
            &*s,
            k,
            &format!("/report-{i}"),
            &[&format!("the yearly report number {i}")],
        )
        .await;
    }
    let rare = indexed(&*s, k, "/okapi", &["notes about the okapi enclosure"]).await;
    let common = indexed(&*s, k, "/common", &["another report on the enclosure"]).await;
    let hits = search_ids(&*s, q("okapi report", Reader::Admin)).await;
    assert_eq!(hits[0], rare, "the rarer word ranks first: {hits:?}");
    // More of the query's words: both words beat either alone.
    let more = indexed(&*s, k, "/more", &["an okapi report, finally"]).await;
    let hits = search_ids(&*s, q("okapi report", Reader::Admin)).await;
    assert_eq!(&hits[..2], &[more, rare], "{hits:?}");
    assert!(hits.contains(&common));
}

async fn a_chunk_holding_the_query_as_a_phrase_ranks_above_one_with_the_words_apart(s: Arc<dyn Store>) {
    let owner = user(&*s, "phrase@example.com", Role::User).await;
    let k = kb(&*s, owner, "phrase").await;
    // Created first and equally long, so that only the phrase can tell them apart.
    let apart = indexed(&*s, k, "/apart", &["the cost of the annual plan for travel"]).await;
    let phrase = indexed(&*s, k, "/phrase", &["the annual travel plan and its cost"]).await;
    let hits = search_ids(&*s, q("annual travel plan", Reader::Admin)).await;
    assert_eq!(hits, vec![phrase, apart]);
    let scored = s.search(q("annual travel plan", Reader::Admin)).await.unwrap();
    assert!(scored[0].score > scored[1].score, "{scored:?}");
}

async fn stop_words_are_ignored_unless_the_query_has_nothing_else(s: Arc<dyn Store>) {
    let owner = user(&*s, "stop@example.com", Role::User).await;
    let k = kb(&*s, owner, "stop").await;
    let budget = indexed(&*s, k, "/budget", &["marketing budget figures"]).await;
    let filler = indexed(&*s, k, "/filler", &["what is the point of this and that"]).await;
    // The stop words would match the filler; they are dropped.
    assert_eq!(
        search_ids(&*s, q("What is the marketing budget?", Reader::Admin)).await,
        vec![budget]
    );
    // A query of stop words only searches for them.
    assert_eq!(
        search_ids(&*s, q("what is this", Reader::Admin)).await,
        vec![filler]
    );
}

async fn a_quoted_phrase_matches_only_as_a_phrase(s: Arc<dyn Store>) {
    let owner = user(&*s, "quote@example.com", Role::User).await;
    let k = kb(&*s, owner, "quote").await;
    let exact = indexed(&*s, k, "/exact", &["we reached the state of the art in glazing"]).await;
    let apart = indexed(&*s, k, "/apart", &["the art of the state budget"]).await;
    let other = indexed(&*s, k, "/other", &["glazing only"]).await;
    assert_eq!(
        search_ids(&*s, q("\"state of the art\"", Reader::Admin)).await,
        vec![exact]
    );
    // Unquoted, the same words match both (and rank the phrase first).
    let loose = search_ids(&*s, q("state of the art", Reader::Admin)).await;
    assert_eq!(loose, vec![exact, apart]);
    // A phrase and words: the phrase is required, the words rank.
    assert_eq!(
        search_ids(&*s, q("\"the art of\" glazing", Reader::Admin)).await,
        vec![apart]
    );
    let ranked = search_ids(&*s, q("glazing \"state of the art\"", Reader::Admin)).await;
    assert_eq!(ranked, vec![exact]);
    assert!(!ranked.contains(&other));
    // An unmatched quote is plain text.
    assert_eq!(
        search_ids(&*s, q("glazing \"only", Reader::Admin)).await[0],
        other
    );
}

async fn a_rare_word_is_ranked_in_full_when_a_common_word_exceeds_the_search_depth(s: Arc<dyn Store>) {
    let owner = user(&*s, "rarewin@example.com", Role::User).await;
    let k = kb(&*s, owner, "rarewin").await;
    let old = indexed(&*s, k, "/old", &["a note on the ocelot"]).await;
    let depth = usize::try_from(kbsync_store::SEARCH_DEPTH).unwrap();
    let filler: Vec<String> = (0..depth + 10).map(|i| format!("ledger line {i}")).collect();
    indexed(
        &*s,
        k,
        "/ledger",
        &filler.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let hits = search_ids(&*s, q("ledger ocelot", Reader::Admin)).await;
    assert!(hits.contains(&old), "{hits:?}");
    let passages = s
        .retrieve(RetrieveQuery {
            text: "ledger ocelot",
            reader: Reader::Admin,
            kb_ids: &[],
            top_k: 3,
            neighbours: 0,
        })
        .await
        .unwrap();
    assert_eq!(passages[0].document_id, old, "{passages:?}");
}

fn rq<'a>(text: &'a str, reader: Reader, top_k: u32, neighbours: u32) -> RetrieveQuery<'a> {
    RetrieveQuery {
        text,
        reader,
        kb_ids: &[],
        top_k,
        neighbours,
    }
}

async fn retrieve_returns_whole_chunks_ranked_with_offsets(s: Arc<dyn Store>) {
    let owner = user(&*s, "ret@example.com", Role::User).await;
    let k = kb(&*s, owner, "ret").await;
    let long = format!(
        "{} the capybara colony grew {}",
        "x ".repeat(200),
        "y ".repeat(200)
    );
    let d = doc_at(&*s, k, "/folder/zoo.txt", &hash(rand_u32()), t(0)).await;
    let chunks = vec![
        Chunk {
            text: "intro without the animal".into(),
            span: Some(CharSpan { start: 0, end: 24 }),
        },
        Chunk {
            text: long.clone(),
            span: Some(CharSpan {
                start: 20,
                end: 20 + long.chars().count() as u64,
            }),
        },
        Chunk {
            text: "capybara capybara capybara".into(),
            span: Some(CharSpan { start: 900, end: 926 }),
        },
    ];
    s.complete_document(d, &chunks, t(1)).await.unwrap();
    let old = indexed(&*s, k, "/old.txt", &["a capybara without offsets"]).await;
    let passages = s.retrieve(rq("capybara", Reader::Admin, 10, 0)).await.unwrap();
    // Several chunks of one document, best first; whole text, not a snippet.
    assert_eq!(passages.len(), 3, "{passages:?}");
    assert_eq!((passages[0].document_id, passages[0].chunk_index), (d, 2));
    let mid = passages.iter().find(|p| p.chunk_index == 1).unwrap();
    assert_eq!(mid.text, long);
    assert_eq!(
        (mid.start, mid.end),
        (Some(20), Some(20 + long.chars().count() as u64))
    );
    assert_eq!(mid.name, "zoo.txt");
    assert_eq!(mid.path, "/folder/zoo.txt");
    assert_eq!(mid.knowledge_id, k);
    assert_eq!(
        mid.web_url.as_deref(),
        Some("https://drive.example//folder/zoo.txt")
    );
    assert!(mid.before.is_none() && mid.after.is_none());
    let unplaced = passages.iter().find(|p| p.document_id == old).unwrap();
    assert_eq!((unplaced.start, unplaced.end), (None, None));
    assert!(passages.windows(2).all(|w| w[0].score >= w[1].score));
    // top_k bounds the passages.
    assert_eq!(
        s.retrieve(rq("capybara", Reader::Admin, 1, 0))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.retrieve(rq("zzzz", Reader::Admin, 5, 0))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn retrieve_returns_neighbouring_chunks_on_request(s: Arc<dyn Store>) {
    let owner = user(&*s, "nb@example.com", Role::User).await;
    let k = kb(&*s, owner, "nb").await;
    let texts: Vec<String> = (0..7).map(|i| format!("part {i} of the story")).collect();
    let mut texts_ref: Vec<&str> = texts.iter().map(String::as_str).collect();
    texts_ref[3] = "the dragon appears";
    texts_ref[0] = "a dragon sleeps";
    let d = indexed(&*s, k, "/story", &texts_ref).await;
    let passages = s.retrieve(rq("appears", Reader::Admin, 5, 2)).await.unwrap();
    assert_eq!(passages.len(), 1);
    let p = &passages[0];
    assert_eq!((p.document_id, p.chunk_index), (d, 3));
    assert_eq!(
        p.before.as_deref(),
        Some(&["part 1 of the story".to_owned(), "part 2 of the story".to_owned()][..])
    );
    assert_eq!(
        p.after.as_deref(),
        Some(&["part 4 of the story".to_owned(), "part 5 of the story".to_owned()][..])
    );
    // At the document's start there is nothing before.
    let passages = s.retrieve(rq("sleeps", Reader::Admin, 5, 1)).await.unwrap();
    assert_eq!(passages[0].before.as_deref(), Some(&[][..]));
    assert_eq!(
        passages[0].after.as_deref(),
        Some(&["part 1 of the story".to_owned()][..])
    );
}

async fn retrieve_filters_by_access_like_search(s: Arc<dyn Store>) {
    let owner = user(&*s, "rao@example.com", Role::User).await;
    let grantee = user(&*s, "rag@example.com", Role::User).await;
    let stranger = user(&*s, "ras@example.com", Role::User).await;
    let mine = kb(&*s, owner, "mine").await;
    let shared = kb(&*s, owner, "shared").await;
    s.set_manual_grants(shared, &[grantee], &[]).await.unwrap();
    let in_mine = indexed(&*s, mine, "/m", &["secret tamarin notes"]).await;
    let in_shared = indexed(&*s, shared, "/s", &["shared tamarin notes"]).await;
    let docs = |ps: Vec<kbsync_core::Passage>| {
        let mut v: Vec<Uuid> = ps.into_iter().map(|p| p.document_id).collect();
        v.sort();
        v
    };
    let mut both = vec![in_mine, in_shared];
    both.sort();
    assert_eq!(
        docs(
            s.retrieve(rq("tamarin", Reader::User(owner), 10, 1))
                .await
                .unwrap()
        ),
        both
    );
    assert_eq!(
        docs(
            s.retrieve(rq("tamarin", Reader::User(grantee), 10, 1))
                .await
                .unwrap()
        ),
        vec![in_shared]
    );
    assert!(
        s.retrieve(rq("tamarin", Reader::User(stranger), 10, 1))
            .await
            .unwrap()
            .is_empty()
    );
    let narrowed = [mine];
    let query = RetrieveQuery {
        kb_ids: &narrowed,
        ..rq("tamarin", Reader::User(grantee), 10, 0)
    };
    assert!(s.retrieve(query).await.unwrap().is_empty());
}

async fn search_returns_only_readable_kbs(s: Arc<dyn Store>) {
    let owner = user(&*s, "so@example.com", Role::User).await;
    let grantee = user(&*s, "sg@example.com", Role::User).await;
    let stranger = user(&*s, "ss@example.com", Role::User).await;
    let mine = kb(&*s, owner, "mine").await;
    let shared = kb(&*s, owner, "shared").await;
    s.set_manual_grants(shared, &[grantee], &[]).await.unwrap();
    let in_mine = indexed(&*s, mine, "/m", &["secret okapi notes"]).await;
    let in_shared = indexed(&*s, shared, "/s", &["shared okapi notes"]).await;
    let sorted = |mut v: Vec<Uuid>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(search_ids(&*s, q("okapi", Reader::User(owner))).await),
        sorted(vec![in_mine, in_shared])
    );
    assert_eq!(
        search_ids(&*s, q("okapi", Reader::User(grantee))).await,
        vec![in_shared]
    );
    assert!(
        search_ids(&*s, q("okapi", Reader::User(stranger)))
            .await
            .is_empty()
    );
    assert_eq!(search_ids(&*s, q("okapi", Reader::Admin)).await.len(), 2);
}

async fn search_kb_ids_filter_narrows_but_never_widens_access(s: Arc<dyn Store>) {
    let owner = user(&*s, "fo@example.com", Role::User).await;
    let other = user(&*s, "fx@example.com", Role::User).await;
    let a = kb(&*s, owner, "a").await;
    let b = kb(&*s, owner, "b").await;
    let foreign = kb(&*s, other, "foreign").await;
    let da = indexed(&*s, a, "/a", &["ibex sighting"]).await;
    let db = indexed(&*s, b, "/b", &["ibex sighting"]).await;
    let df = indexed(&*s, foreign, "/f", &["ibex sighting"]).await;
    let a_only = [a];
    let query = SearchQuery {
        text: "ibex",
        reader: Reader::User(owner),
        kb_ids: &a_only,
        limit: 10,
    };
    assert_eq!(search_ids(&*s, query).await, vec![da]);
    let a_and_foreign = [a, foreign];
    let query = SearchQuery {
        text: "ibex",
        reader: Reader::User(owner),
        kb_ids: &a_and_foreign,
        limit: 10,
    };
    assert_eq!(search_ids(&*s, query).await, vec![da]);
    let foreign_only = [foreign];
    let query = SearchQuery {
        text: "ibex",
        reader: Reader::User(owner),
        kb_ids: &foreign_only,
        limit: 10,
    };
    assert!(search_ids(&*s, query).await.is_empty());
    let query = SearchQuery {
        text: "ibex",
        reader: Reader::Admin,
        kb_ids: &[b, foreign],
        limit: 10,
    };
    let mut got = search_ids(&*s, query).await;
    got.sort();
    let mut expected = vec![db, df];
    expected.sort();
    assert_eq!(got, expected);
}

async fn search_returns_one_hit_per_document(s: Arc<dyn Store>) {
    let owner = user(&*s, "one@example.com", Role::User).await;
    let k = kb(&*s, owner, "one").await;
    let many = indexed(
        &*s,
        k,
        "/many",
        &[
            "a chunk about the tapir and nothing else of note here at all",
            "tapir tapir tapir tapir",
            "another tapir chunk with filler words around it",
        ],
    )
    .await;
    let single = indexed(
        &*s,
        k,
        "/single",
        &["one tapir mention within a rather long sentence of words"],
    )
    .await;
    let hits = s.search(q("tapir", Reader::Admin)).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.document_id).collect::<Vec<_>>(),
        vec![many, single]
    );
    assert!(
        hits[0].snippet.contains("tapir tapir"),
        "best chunk's snippet expected: {:?}",
        hits[0].snippet
    );
}

async fn search_snippet_is_plain_short_text_around_the_match(s: Arc<dyn Store>) {
    let owner = user(&*s, "snip@example.com", Role::User).await;
    let k = kb(&*s, owner, "snip").await;
    let filler = "lorem ipsum dolor sit amet consectetur ".repeat(40);
    let text = format!("{filler}\n\nThe Übergabe   protocol starts here. {filler}");
    indexed(&*s, k, "/long", &[text.as_str()]).await;
    for query in ["ubergabe", "Übergabe protocol"] {
        let hits = s.search(q(query, Reader::Admin)).await.unwrap();
        assert_eq!(hits.len(), 1);
        let snippet = &hits[0].snippet;
        assert!(
            snippet.chars().count() <= 240,
            "{} chars: {snippet:?}",
            snippet.chars().count()
        );
        assert!(snippet.contains("Übergabe"), "{snippet:?}");
        assert!(
            !snippet.contains('<') && !snippet.contains('>') && !snippet.contains('\n'),
            "{snippet:?}"
        );
    }
}

async fn search_hit_names_kb_document_and_web_url(s: Arc<dyn Store>) {
    let owner = user(&*s, "hit@example.com", Role::User).await;
    let k = kb(&*s, owner, "hit").await;
    let d = indexed(&*s, k, "/folder/Report.docx", &["axolotl habitat"]).await;
    let hits = s.search(q("axolotl", Reader::Admin)).await.unwrap();
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!((h.knowledge_id, h.document_id), (k, d));
    assert_eq!(h.name, "Report.docx");
    assert_eq!(
        h.web_url.as_deref(),
        Some("https://drive.example//folder/Report.docx")
    );
    assert_eq!(h.snippet, "axolotl habitat");
    assert!(h.score.is_finite() && h.score > 0.0, "{}", h.score);
}

async fn search_respects_limit(s: Arc<dyn Store>) {
    let owner = user(&*s, "lim@example.com", Role::User).await;
    let k = kb(&*s, owner, "lim").await;
    for i in 0..5 {
        indexed(&*s, k, &format!("/{i}"), &["pangolin"]).await;
    }
    assert_eq!(
        s.search(SearchQuery {
            limit: 3,
            ..q("pangolin", Reader::Admin)
        })
        .await
        .unwrap()
        .len(),
        3
    );
    assert_eq!(s.search(q("pangolin", Reader::Admin)).await.unwrap().len(), 5);
    assert!(
        s.search(SearchQuery {
            limit: 0,
            ..q("pangolin", Reader::Admin)
        })
        .await
        .unwrap()
        .is_empty()
    );
}

async fn search_skips_documents_not_processed(s: Arc<dyn Store>) {
    let owner = user(&*s, "np@example.com", Role::User).await;
    let k = kb(&*s, owner, "np").await;
    let ok = indexed(&*s, k, "/ok", &["wombat burrow"]).await;
    let failed = indexed(&*s, k, "/failed", &["wombat burrow"]).await;
    s.fail_document(failed, "later failure", t(5)).await.unwrap();
    let _pending = doc_at(&*s, k, "/pending", &hash(3), t(0)).await;
    assert_eq!(search_ids(&*s, q("wombat", Reader::Admin)).await, vec![ok]);
}
