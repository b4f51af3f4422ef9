"""Numbered schema migrations; each runs once and is recorded in ``schema_migrations``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "POSTGRES_MIGRATIONS", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "articles, outlets, versions", """
        CREATE TABLE outlets (
            slug TEXT PRIMARY KEY,
            name TEXT NOT NULL
        );
        CREATE TABLE outlet_aliases (
            alias TEXT PRIMARY KEY,
            slug TEXT NOT NULL REFERENCES outlets(slug)
        );
        CREATE TABLE articles (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            file_id TEXT NOT NULL,
            outlet TEXT NOT NULL,
            outlet_slug TEXT NOT NULL REFERENCES outlets(slug),
            title TEXT NOT NULL,
            published_at TEXT NOT NULL,
            published_ts INTEGER NOT NULL,
            digest TEXT NOT NULL DEFAULT '',
            body_html TEXT NOT NULL DEFAULT '',
            body_text TEXT NOT NULL DEFAULT '',
            body_raw TEXT,
            url TEXT NOT NULL DEFAULT '',
            url_key TEXT NOT NULL DEFAULT '',
            share_url TEXT NOT NULL DEFAULT '',
            content_hash TEXT NOT NULL,
            extra TEXT NOT NULL DEFAULT '{}',
            post_style TEXT,
            fetched_at TEXT,
            stored_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX articles_published ON articles(published_ts, id);
        CREATE INDEX articles_outlet_published ON articles(outlet_slug, published_ts);
        CREATE INDEX articles_url_key ON articles(url_key) WHERE url_key <> '';
        CREATE INDEX articles_content_hash ON articles(content_hash);
        CREATE TABLE article_versions (
            article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            title TEXT NOT NULL,
            body_html TEXT NOT NULL,
            body_text TEXT NOT NULL,
            replaced_at TEXT NOT NULL,
            PRIMARY KEY (article_id, version)
        );
    """),
    Migration(2, "change log for incremental publishing", """
        CREATE TABLE changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            uid TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('new', 'update', 'delete')),
            outlet_slug TEXT NOT NULL,
            published_ts INTEGER NOT NULL,
            at TEXT NOT NULL
        );
        INSERT INTO changes (uid, kind, outlet_slug, published_ts, at)
            SELECT uid, 'new', outlet_slug, published_ts, stored_at
            FROM articles ORDER BY id;
    """),
)

MIGRATIONS += (
    Migration(3, "site build state; which article a change was and where it was before", """
        ALTER TABLE changes ADD COLUMN old_outlet_slug TEXT;
        ALTER TABLE changes ADD COLUMN old_published_ts INTEGER;
        ALTER TABLE changes ADD COLUMN article_id INTEGER;
        DROP INDEX articles_outlet_published;
        CREATE INDEX articles_outlet_published ON articles(outlet_slug, published_ts, id);
        CREATE TABLE site_builds (
            out_dir TEXT PRIMARY KEY,
            last_seq INTEGER NOT NULL,
            fingerprint TEXT NOT NULL,
            built_at TEXT NOT NULL
        );
        CREATE TABLE site_articles (
            out_dir TEXT NOT NULL,
            uid TEXT NOT NULL,
            path TEXT NOT NULL,
            PRIMARY KEY (out_dir, uid)
        );
    """),
)

MIGRATIONS += (
    Migration(4, "source health and the list entries already seen", """
        CREATE TABLE source_health (
            name TEXT PRIMARY KEY,
            last_attempt TEXT,
            last_success TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            next_poll REAL NOT NULL DEFAULT 0,
            lists TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE source_items (
            uid TEXT PRIMARY KEY,
            list_hash TEXT NOT NULL
        );
    """),
)

MIGRATIONS += (
    Migration(5, "full-text search index (segmented Chinese; see caixun/segment.py)", """
        CREATE VIRTUAL TABLE search USING fts5(
            title_words, title_grams, text_words, text_grams,
            content='', tokenize='unicode61 remove_diacritics 0'
        );
        CREATE TABLE search_meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
    """),
)

MIGRATIONS += (
    Migration(6, "stories: near-duplicate fingerprints, identity and LSH keys (see caixun/dedup.py)", """
        ALTER TABLE articles ADD COLUMN story_id INTEGER;
        ALTER TABLE articles ADD COLUMN duplicate_of INTEGER;
        CREATE INDEX articles_story ON articles(story_id) WHERE story_id IS NOT NULL;
        CREATE INDEX articles_duplicate_of ON articles(duplicate_of) WHERE duplicate_of IS NOT NULL;
        CREATE TABLE dedup_prints (
            article_id INTEGER PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            fingerprint BLOB NOT NULL,
            exact_keys TEXT NOT NULL
        );
        CREATE TABLE dedup_keys (
            key INTEGER NOT NULL,
            published_ts INTEGER NOT NULL,
            article_id INTEGER NOT NULL,
            PRIMARY KEY (key, published_ts, article_id)
        ) WITHOUT ROWID;
        CREATE INDEX dedup_keys_article ON dedup_keys(article_id);
    """),
)

MIGRATIONS += (
    Migration(7, "ids of fetched exact copies merged into an article of the same outlet", """
        CREATE TABLE article_aliases (
            uid TEXT PRIMARY KEY,
            article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE
        );
        CREATE INDEX article_aliases_article ON article_aliases(article_id);
    """),
)

MIGRATIONS += (
    Migration(8, "changes that only relink an article's story", """
        ALTER TABLE changes ADD COLUMN relink INTEGER NOT NULL DEFAULT 0;
    """),
)

MIGRATIONS += (
    Migration(9, "identity: the portal's own id; aliases keep the page they had", """
        ALTER TABLE articles ADD COLUMN identity TEXT NOT NULL DEFAULT '';
        ALTER TABLE article_aliases ADD COLUMN outlet_slug TEXT;
        ALTER TABLE article_aliases ADD COLUMN published_ts INTEGER;
        ALTER TABLE article_aliases ADD COLUMN file_id TEXT;
        CREATE INDEX articles_file_id ON articles(file_id);
    """),
)

MIGRATIONS += (
    Migration(10, "imported files: a file unchanged since its import is not read again", """
        CREATE TABLE import_files (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            digest BLOB NOT NULL,
            uid TEXT NOT NULL,
            repairs TEXT NOT NULL DEFAULT '[]',
            reader TEXT NOT NULL
        ) WITHOUT ROWID;
    """),
)

MIGRATIONS += (
    Migration(11, "static-search terms kept at write time (see caixun.segment.static_terms)", """
        CREATE TABLE static_terms (
            article_id INTEGER PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            terms BLOB NOT NULL
        );
    """),
)

MIGRATIONS += (
    Migration(12, "securities: names learned, articles tagged, stock pages to rebuild", """
        CREATE TABLE securities (
            code TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            market TEXT NOT NULL,
            pair TEXT,
            source TEXT NOT NULL,
            learned_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE security_names (
            code TEXT NOT NULL REFERENCES securities(code),
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            learned_at TEXT NOT NULL,
            UNIQUE (code, name)
        );
        CREATE TABLE article_securities (
            code TEXT NOT NULL,
            article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            PRIMARY KEY (code, article_id)
        ) WITHOUT ROWID;
        CREATE INDEX article_securities_article ON article_securities(article_id);
        CREATE TABLE stock_changes (
            change_seq INTEGER NOT NULL,
            code TEXT NOT NULL,
            published_ts INTEGER NOT NULL
        );
        CREATE INDEX stock_changes_seq ON stock_changes(change_seq);
        -- Articles stored before this version are tagged by the re-tag (from id 0).
        INSERT INTO search_meta (key, value) VALUES ('retag_after_id', '0')
            ON CONFLICT (key) DO UPDATE SET value = '0';
    """),
)

MIGRATIONS += (
    Migration(13, "watch lists: the watches known, and the outbox of their notifications", """
        CREATE TABLE watches (
            name TEXT PRIMARY KEY,
            definition TEXT NOT NULL,
            notifies INTEGER NOT NULL,
            added_at TEXT NOT NULL,
            after_id INTEGER NOT NULL
        );
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            watch TEXT NOT NULL,
            uid TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'failed')),
            done_at TEXT,
            last_error TEXT,
            UNIQUE (watch, uid)
        );
        CREATE INDEX outbox_pending ON outbox(next_at) WHERE state = 'pending';
    """),
)

MIGRATIONS += (
    Migration(14, "facets: the outlet and date of each article as tokens of the search index "
                  "(see caixun/archive/facets.py); the index is rebuilt", """
        DROP TABLE search;
        CREATE VIRTUAL TABLE search USING fts5(
            title_words, title_grams, text_words, text_grams, facets,
            content='', tokenize='unicode61 remove_diacritics 0'
        );
        DELETE FROM search_meta WHERE key = 'segment_version';
    """),
)


MIGRATIONS += (
    Migration(15, "several fetchers: leases on sources, the next request to each host", """
        CREATE TABLE source_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE TABLE host_gaps (
            host TEXT PRIMARY KEY,
            next_at REAL NOT NULL
        );
    """),
)

MIGRATIONS += (
    Migration(16, "stories of one event told in other words: each article's weighed terms and "
                  "figures, and how many articles hold each term (see caixun/events.py)", """
        ALTER TABLE dedup_prints ADD COLUMN event BLOB NOT NULL DEFAULT x'';
        CREATE TABLE story_terms (
            term INTEGER PRIMARY KEY,
            docs INTEGER NOT NULL
        );
    """),
)

MIGRATIONS += (
    Migration(17, "a security's articles in time order: each tag keeps its article's time, "
                  "so a stock page's position and newest articles come from one index range", """
        ALTER TABLE article_securities ADD COLUMN published_ts INTEGER NOT NULL DEFAULT 0;
        UPDATE article_securities SET published_ts = (
            SELECT published_ts FROM articles WHERE articles.id = article_securities.article_id);
        CREATE INDEX article_securities_time ON article_securities(code, published_ts, article_id);
    """),
)

# PostgreSQL starts at SQLite's version 14: the same tables in its dialect
# (identity columns for rowids, BYTEA for BLOB, a tsvector for the FTS5 index;
# see caixun.archive.postgres and caixun.archive.pgsearch). A later migration
# is added to both lists under one number, so a version means the same schema.
# Text compares and sorts by code point (COLLATE "C"), as SQLite's does: pages
# list outlets and aliases in the same order whatever the server's locale.
_T = 'TEXT COLLATE "C"'
POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(14, "the archive as SQLite's schema version 14 has it, in PostgreSQL", f"""
        CREATE TABLE outlets (
            slug {_T} PRIMARY KEY,
            name {_T} NOT NULL
        );
        CREATE TABLE outlet_aliases (
            alias {_T} PRIMARY KEY,
            slug {_T} NOT NULL REFERENCES outlets(slug)
        );
        CREATE TABLE articles (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            uid {_T} NOT NULL UNIQUE,
            file_id {_T} NOT NULL,
            outlet {_T} NOT NULL,
            outlet_slug {_T} NOT NULL REFERENCES outlets(slug),
            title {_T} NOT NULL,
            published_at {_T} NOT NULL,
            published_ts BIGINT NOT NULL,
            digest {_T} NOT NULL DEFAULT '',
            body_html {_T} NOT NULL DEFAULT '',
            body_text {_T} NOT NULL DEFAULT '',
            body_raw {_T},
            url {_T} NOT NULL DEFAULT '',
            url_key {_T} NOT NULL DEFAULT '',
            share_url {_T} NOT NULL DEFAULT '',
            content_hash {_T} NOT NULL,
            extra {_T} NOT NULL DEFAULT '{{}}',
            post_style {_T},
            fetched_at {_T},
            stored_at {_T} NOT NULL,
            updated_at {_T} NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            story_id BIGINT,
            duplicate_of BIGINT,
            identity {_T} NOT NULL DEFAULT ''
        );
        CREATE INDEX articles_published ON articles(published_ts, id);
        CREATE INDEX articles_outlet_published ON articles(outlet_slug, published_ts, id);
        CREATE INDEX articles_url_key ON articles(url_key) WHERE url_key <> '';
        CREATE INDEX articles_content_hash ON articles(content_hash);
        CREATE INDEX articles_story ON articles(story_id) WHERE story_id IS NOT NULL;
        CREATE INDEX articles_duplicate_of ON articles(duplicate_of)
            WHERE duplicate_of IS NOT NULL;
        CREATE INDEX articles_file_id ON articles(file_id);
        CREATE UNIQUE INDEX articles_identity ON articles(identity) WHERE identity <> '';
        CREATE TABLE article_versions (
            article_id BIGINT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            title {_T} NOT NULL,
            body_html {_T} NOT NULL,
            body_text {_T} NOT NULL,
            replaced_at {_T} NOT NULL,
            PRIMARY KEY (article_id, version)
        );
        CREATE TABLE changes (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            uid {_T} NOT NULL,
            kind {_T} NOT NULL CHECK (kind IN ('new', 'update', 'delete')),
            outlet_slug {_T} NOT NULL,
            published_ts BIGINT NOT NULL,
            at {_T} NOT NULL,
            old_outlet_slug {_T},
            old_published_ts BIGINT,
            article_id BIGINT,
            relink INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE site_builds (
            out_dir {_T} PRIMARY KEY,
            last_seq BIGINT NOT NULL,
            fingerprint {_T} NOT NULL,
            built_at {_T} NOT NULL
        );
        CREATE TABLE site_articles (
            out_dir {_T} NOT NULL,
            uid {_T} NOT NULL,
            path {_T} NOT NULL,
            PRIMARY KEY (out_dir, uid)
        );
        CREATE TABLE source_health (
            name {_T} PRIMARY KEY,
            last_attempt {_T},
            last_success {_T},
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_error {_T},
            next_poll DOUBLE PRECISION NOT NULL DEFAULT 0,
            lists {_T} NOT NULL DEFAULT '{{}}'
        );
        CREATE TABLE source_items (
            uid {_T} PRIMARY KEY,
            list_hash {_T} NOT NULL
        );
        CREATE TABLE search_meta (
            key {_T} PRIMARY KEY,
            value {_T} NOT NULL
        );
        CREATE TABLE search (
            article_id BIGINT PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            terms TSVECTOR NOT NULL,
            doc_len INTEGER NOT NULL,
            -- the article's, so that a date or outlet filter and the terms combine
            -- in one table's indexes (as SQLite's facet tokens do in the FTS5 index)
            published_ts BIGINT NOT NULL,
            outlet_slug {_T} NOT NULL
        );
        CREATE INDEX search_terms ON search USING GIN (terms);
        CREATE INDEX search_published ON search (published_ts);
        CREATE INDEX search_outlet ON search (outlet_slug, published_ts);
        CREATE TABLE dedup_prints (
            article_id BIGINT PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            fingerprint BYTEA NOT NULL,
            exact_keys {_T} NOT NULL
        );
        CREATE TABLE dedup_keys (
            key BIGINT NOT NULL,
            published_ts BIGINT NOT NULL,
            article_id BIGINT NOT NULL,
            PRIMARY KEY (key, published_ts, article_id)
        );
        CREATE INDEX dedup_keys_article ON dedup_keys(article_id);
        CREATE TABLE article_aliases (
            uid {_T} PRIMARY KEY,
            article_id BIGINT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            outlet_slug {_T},
            published_ts BIGINT,
            file_id {_T}
        );
        CREATE INDEX article_aliases_article ON article_aliases(article_id);
        CREATE TABLE import_files (
            path {_T} PRIMARY KEY,
            size BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            digest BYTEA NOT NULL,
            uid {_T} NOT NULL,
            repairs {_T} NOT NULL DEFAULT '[]',
            reader {_T} NOT NULL
        );
        CREATE TABLE static_terms (
            article_id BIGINT PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            terms BYTEA NOT NULL
        );
        CREATE TABLE securities (
            code {_T} PRIMARY KEY,
            name {_T} NOT NULL,
            market {_T} NOT NULL,
            pair {_T},
            source {_T} NOT NULL,
            learned_at {_T} NOT NULL,
            updated_at {_T} NOT NULL
        );
        CREATE TABLE security_names (
            rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            code {_T} NOT NULL REFERENCES securities(code),
            name {_T} NOT NULL,
            kind {_T} NOT NULL,
            source {_T} NOT NULL,
            learned_at {_T} NOT NULL,
            UNIQUE (code, name)
        );
        CREATE TABLE article_securities (
            code {_T} NOT NULL,
            article_id BIGINT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            PRIMARY KEY (code, article_id)
        );
        CREATE INDEX article_securities_article ON article_securities(article_id);
        CREATE TABLE stock_changes (
            change_seq BIGINT NOT NULL,
            code {_T} NOT NULL,
            published_ts BIGINT NOT NULL
        );
        CREATE INDEX stock_changes_seq ON stock_changes(change_seq);
        INSERT INTO search_meta (key, value) VALUES ('retag_after_id', '0');
        CREATE TABLE watches (
            name {_T} PRIMARY KEY,
            definition {_T} NOT NULL,
            notifies INTEGER NOT NULL,
            added_at {_T} NOT NULL,
            after_id BIGINT NOT NULL
        );
        CREATE TABLE outbox (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            watch {_T} NOT NULL,
            uid {_T} NOT NULL,
            payload {_T} NOT NULL,
            created_at {_T} NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at DOUBLE PRECISION NOT NULL DEFAULT 0,
            state {_T} NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'failed')),
            done_at {_T},
            last_error {_T},
            UNIQUE (watch, uid)
        );
        CREATE INDEX outbox_pending ON outbox(next_at) WHERE state = 'pending';
    """),
)

POSTGRES_MIGRATIONS += (
    Migration(15, "several fetchers: leases on sources, the next request to each host", f"""
        CREATE TABLE source_leases (
            name {_T} PRIMARY KEY,
            holder {_T} NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE host_gaps (
            host {_T} PRIMARY KEY,
            next_at DOUBLE PRECISION NOT NULL
        );
    """),
)

POSTGRES_MIGRATIONS += (
    Migration(16, "stories of one event told in other words: each article's weighed terms and "
                  "figures, and how many articles hold each term (see caixun/events.py)", """
        ALTER TABLE dedup_prints ADD COLUMN event BYTEA NOT NULL DEFAULT '';
        CREATE TABLE story_terms (
            term BIGINT PRIMARY KEY,
            docs BIGINT NOT NULL
        );
    """),
)

POSTGRES_MIGRATIONS += (
    Migration(17, "a security's articles in time order: each tag keeps its article's time, "
                  "so a stock page's position and newest articles come from one index range", """
        ALTER TABLE article_securities ADD COLUMN published_ts BIGINT NOT NULL DEFAULT 0;
        UPDATE article_securities s SET published_ts = a.published_ts
            FROM articles a WHERE a.id = s.article_id;
        CREATE INDEX article_securities_time ON article_securities(code, published_ts, article_id);
    """),
)
