package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgresTable is the table of the PostgreSQL backend when
// PostgresOptions.Table is empty.
const DefaultPostgresTable = "wagate_dedupe"

// PostgresSchema returns the SQL that creates the PostgreSQL backend's table
// and its expiry index, idempotently (CREATE … IF NOT EXISTS), for table
// ("" means DefaultPostgresTable; "schema.table" names a schema). It is what
// InitSchema runs and what deployments/README.md shows.
func PostgresSchema(table string) (string, error) {
	t, err := pgTable(table)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  key        text        PRIMARY KEY,
  state      text        NOT NULL,
  fence      bigint      NOT NULL DEFAULT 0,
  lock_token text,
  lock_until timestamptz,
  expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS %s ON %s (expires_at);`, t.quoted, t.index, t.quoted), nil
}

// pgColumns are the table's columns and their types as information_schema
// reports them, which CheckSchema compares with the live table.
var pgColumns = []struct{ name, typ, nullable string }{
	{"key", "text", "NO"},
	{"state", "text", "NO"},
	{"fence", "bigint", "NO"},
	{"lock_token", "text", "YES"},
	{"lock_until", "timestamp with time zone", "YES"},
	{"expires_at", "timestamp with time zone", "NO"},
}

// pgTableName is a table name split and quoted for SQL.
type pgTableName struct {
	schema, name string // schema "" means the search_path's first
	quoted       string // "schema"."name" or "name"
	index        string // the expiry index's quoted name
}

// pgTable parses a table name: "name" or "schema.name", each part a plain
// identifier of letters, digits and '_' (not starting with a digit), at most
// 50 bytes.
func pgTable(table string) (pgTableName, error) {
	if table == "" {
		table = DefaultPostgresTable
	}
	var t pgTableName
	parts := strings.Split(table, ".")
	switch len(parts) {
	case 1:
		t.name = parts[0]
	case 2:
		t.schema, t.name = parts[0], parts[1]
	default:
		return t, fmt.Errorf("dedupe: postgres table %q: want name or schema.name", table)
	}
	for _, p := range parts {
		if !pgIdent(p) {
			return t, fmt.Errorf("dedupe: postgres table %q: %q is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 50 bytes)", table, p)
		}
	}
	if t.schema == "" {
		t.quoted = pgx.Identifier{t.name}.Sanitize()
	} else {
		t.quoted = pgx.Identifier{t.schema, t.name}.Sanitize()
	}
	t.index = pgx.Identifier{t.name + "_expires_at"}.Sanitize()
	return t, nil
}

// pgIdent reports whether s is a plain SQL identifier we accept.
func pgIdent(s string) bool {
	if s == "" || len(s) > 50 || ('0' <= s[0] && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ErrSchema is returned, wrapped, by CheckSchema (and InitSchema) when the
// live table or index is missing or differs from the one the backend needs:
// the message names what differs.
var ErrSchema = errors.New("dedupe: schema")

// InitSchema creates the table and its index if they do not exist (see
// PostgresSchema), then checks them with CheckSchema: a live table that
// conflicts is an error wrapping ErrSchema, never altered. It is idempotent
// and safe to run while ingresses and workers use the table.
func (p *Postgres) InitSchema(ctx context.Context) error {
	sql, err := PostgresSchema(p.tableOpt)
	if err != nil {
		return err
	}
	table, index, _ := strings.Cut(sql, ";\n")
	if _, err := p.pool.Exec(ctx, table); err != nil {
		return fmt.Errorf("dedupe: postgres init %s: %w", p.t.quoted, err)
	}
	// Check the columns before indexing one that may not be there.
	if err := p.check(ctx, false); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, index); err != nil {
		return fmt.Errorf("dedupe: postgres init %s: %w", p.t.quoted, err)
	}
	return p.CheckSchema(ctx)
}

// CheckSchema checks that the table exists with the columns, types and
// primary key the backend needs, and the expiry index. A missing or
// conflicting table is an error wrapping ErrSchema that names the
// difference (create it with `wagate dedupe init`); extra columns are
// allowed. Other errors (connection) are wrapped.
func (p *Postgres) CheckSchema(ctx context.Context) error { return p.check(ctx, true) }

// check is CheckSchema; withIndex says whether to check the expiry index.
func (p *Postgres) check(ctx context.Context, withIndex bool) error {
	const q = `
SELECT a.attname, format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END
FROM pg_attribute a
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`
	rows, err := p.pool.Query(ctx, q, p.t.quoted)
	if err != nil {
		return fmt.Errorf("dedupe: postgres check %s: %w", p.t.quoted, err)
	}
	live := map[string][2]string{}
	for rows.Next() {
		var name, typ, nullable string
		if err := rows.Scan(&name, &typ, &nullable); err != nil {
			rows.Close()
			return fmt.Errorf("dedupe: postgres check %s: %w", p.t.quoted, err)
		}
		live[name] = [2]string{typ, nullable}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("dedupe: postgres check %s: %w", p.t.quoted, err)
	}
	if len(live) == 0 {
		return fmt.Errorf("%w: table %s does not exist (create it with: wagate dedupe init)", ErrSchema, p.t.quoted)
	}
	var diffs []string
	for _, c := range pgColumns {
		got, ok := live[c.name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("column %s is missing", c.name))
		case got[0] != c.typ:
			diffs = append(diffs, fmt.Sprintf("column %s is %s, want %s", c.name, got[0], c.typ))
		case got[1] != c.nullable:
			want := "NOT NULL"
			if c.nullable == "YES" {
				want = "nullable"
			}
			diffs = append(diffs, fmt.Sprintf("column %s: want %s", c.name, want))
		}
	}
	// The primary key must be exactly (key): ON CONFLICT (key) needs it.
	var pk []string
	err = p.pool.QueryRow(ctx, `
SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}')
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = to_regclass($1) AND i.indisprimary`, p.t.quoted).Scan(&pk)
	if err != nil {
		return fmt.Errorf("dedupe: postgres check %s: %w", p.t.quoted, err)
	}
	if len(pk) != 1 || pk[0] != "key" {
		diffs = append(diffs, fmt.Sprintf("primary key is (%s), want (key)", strings.Join(pk, ", ")))
	}
	indexed := !withIndex
	if withIndex {
		err = p.pool.QueryRow(ctx, `
SELECT EXISTS (
  SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = to_regclass($1) AND a.attname = 'expires_at')`, p.t.quoted).Scan(&indexed)
		if err != nil {
			return fmt.Errorf("dedupe: postgres check %s: %w", p.t.quoted, err)
		}
	}
	if !indexed {
		diffs = append(diffs, "no index on expires_at (the cleanup needs one)")
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: table %s conflicts with the dedupe layout: %s", ErrSchema, p.t.quoted, strings.Join(diffs, "; "))
	}
	return nil
}
