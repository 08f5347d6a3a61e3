//! Full-text search: ranking, query syntax, and who may read what.

use super::*;

kbsync_kit::on_both_databases!(
    search_ranks_document_mentioning_term_more_often_higher,
    a_word_in_more_chunks_than_the_search_depth_ranks_only_the_newest_matches,
    the_search_depth_counts_only_chunks_the_reader_may_read,
    search_ignores_diacritics,
    search_treats_query_syntax_characters_as_plain_text,
    search_query_without_words_returns_nothing,
    search_requires_every_query_word,
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
    assert_eq!(
        search_ids(&*s, q("budget zebra", Reader::Admin)).await,
        vec![oldest]
    );
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
    // Operators are words like any other: every word must occur.
    assert!(
        search_ids(&*s, q("alpha OR zulu", Reader::Admin))
            .await
            .is_empty()
    );
    assert_eq!(
        search_ids(&*s, q("\"alpha\" -beta*", Reader::Admin)).await,
        vec![d]
    );
    assert_eq!(
        search_ids(&*s, q("NEAR(alpha gamma)", Reader::Admin)).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(
        search_ids(&*s, q("(alpha) & [gamma]", Reader::Admin)).await,
        vec![d]
    );
    let or_doc = indexed(&*s, k, "/or", &["near or not, alpha stays"]).await;
    assert_eq!(
        search_ids(&*s, q("NEAR(alpha OR)", Reader::Admin)).await,
        vec![or_doc]
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

async fn search_requires_every_query_word(s: Arc<dyn Store>) {
    let owner = user(&*s, "and@example.com", Role::User).await;
    let k = kb(&*s, owner, "and").await;
    let both = indexed(&*s, k, "/both", &["red apples and green pears"]).await;
    let one = indexed(&*s, k, "/one", &["red cars only"]).await;
    assert_eq!(search_ids(&*s, q("red pears", Reader::Admin)).await, vec![both]);
    let mut red = search_ids(&*s, q("RED", Reader::Admin)).await;
    red.sort();
    let mut expected = vec![both, one];
    expected.sort();
    assert_eq!(red, expected);
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
