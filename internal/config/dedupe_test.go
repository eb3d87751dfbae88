package config_test

import (
	"strings"
	"testing"

	"github.com/wagate/wagate/internal/config"
)

func TestLoadDedupeBackends(t *testing.T) {
	t.Setenv("WAGATE_DEDUPE_BACKEND", "postgres")
	if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), "WAGATE_DEDUPE_BACKEND=postgres needs WAGATE_POSTGRES_URL") {
		t.Fatalf("postgres without a URL: %v, want an error naming WAGATE_POSTGRES_URL", err)
	}
	t.Setenv("WAGATE_POSTGRES_URL", "postgres://wagate@db/wagate")
	c, err := config.Load()
	if err != nil || c.PostgresTable != "wagate_dedupe" {
		t.Fatalf("postgres: %+v, %v; want table wagate_dedupe", c.PostgresTable, err)
	}

	t.Setenv("WAGATE_DEDUPE_BACKEND", "dynamodb")
	t.Setenv("WAGATE_DYNAMODB_TABLE", "claims")
	t.Setenv("WAGATE_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000")
	c, err = config.Load()
	if err != nil || c.DynamoDBTable != "claims" || c.DynamoDBEndpoint != "http://127.0.0.1:8000" {
		t.Fatalf("dynamodb: table %q endpoint %q, %v", c.DynamoDBTable, c.DynamoDBEndpoint, err)
	}

	t.Setenv("WAGATE_DEDUPE_BACKEND", "mysql")
	if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), "redis, nats, postgres, dynamodb") {
		t.Fatalf("unknown backend: %v, want the choices named", err)
	}
}
