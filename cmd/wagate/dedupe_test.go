package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wagate/wagate/internal/testenv"
)

// runWagate runs the wagate command line with args and returns its output.
func runWagate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestDedupePostgres(t *testing.T) {
	url := testenv.PostgresURL(t)
	t.Setenv("WAGATE_DEDUPE_BACKEND", "postgres")
	t.Setenv("WAGATE_POSTGRES_URL", url)
	t.Setenv("WAGATE_POSTGRES_TABLE", "claims")

	if out, err := runWagate(t, "dedupe", "check"); err == nil || !strings.Contains(err.Error(), "does not exist (create it with: wagate dedupe init)") {
		t.Fatalf("dedupe check before init: %v\n%s", err, out)
	}
	for range 2 {
		out, err := runWagate(t, "dedupe", "init")
		if err != nil || !strings.Contains(out, "postgres table claims and its expires_at index: in place") {
			t.Fatalf("dedupe init: %v\n%s", err, out)
		}
	}
	if out, err := runWagate(t, "dedupe", "check"); err != nil || !strings.Contains(out, "checked") {
		t.Fatalf("dedupe check after init: %v\n%s", err, out)
	}

	// A live table of another shape is a clear error, left as it is.
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `CREATE TABLE mine (key text PRIMARY KEY, state int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WAGATE_POSTGRES_TABLE", "mine")
	_, err = runWagate(t, "dedupe", "init")
	if err == nil || !strings.Contains(err.Error(), `table "mine" conflicts with the dedupe layout: column state is integer, want text`) {
		t.Fatalf("dedupe init over a conflicting table: %v", err)
	}
}

func TestDedupeDynamoDB(t *testing.T) {
	t.Setenv("WAGATE_DEDUPE_BACKEND", "dynamodb")
	t.Setenv("WAGATE_DYNAMODB_ENDPOINT", testenv.DynamoDBEndpoint(t))
	t.Setenv("WAGATE_DYNAMODB_TABLE", "claims")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")

	if out, err := runWagate(t, "dedupe", "check"); err == nil || !strings.Contains(err.Error(), "table claims does not exist (create it with: wagate dedupe init)") {
		t.Fatalf("dedupe check before init: %v\n%s", err, out)
	}
	for range 2 {
		out, err := runWagate(t, "dedupe", "init")
		if err != nil || !strings.Contains(out, "dynamodb table claims: in place") {
			t.Fatalf("dedupe init: %v\n%s", err, out)
		}
	}
	if out, err := runWagate(t, "dedupe", "check"); err != nil || !strings.Contains(out, "dynamodb table claims: checked") {
		t.Fatalf("dedupe check after init: %v\n%s", err, out)
	}
}
