package chaos

import (
	"context"
	"os"
	"os/exec"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
)

// The dedupe backends a scenario can run on (Config.Backend). Redis is the
// default, its marks seen by MONITOR; on PostgreSQL a trigger records them
// (pgMarks); on DynamoDB the suite sees no marks, so re-runs after a done
// mark are counted as re-runs after a crash (which the scenarios without
// crashes of workers forbid outright).
const (
	BackendRedis    = "redis"
	BackendPostgres = "postgres"
	BackendDynamoDB = "dynamodb"
)

// dynamoEnv is the AWS SDK environment of the processes and of the suite
// against dynalite.
var dynamoEnv = []string{"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=chaos", "AWS_SECRET_ACCESS_KEY=chaos"}

// startBackend prepares s.Cfg.Backend's server and table (PostgreSQL: a
// fresh schema; DynamoDB: a private dynalite), creating the table with
// `wagate dedupe init`, and sets s.backendEnv and s.store.
func (s *Stack) startBackend(ctx context.Context) {
	t := s.T
	switch s.Cfg.Backend {
	case BackendRedis:
		s.backendEnv = []string{"WAGATE_DEDUPE_BACKEND=redis"}
		s.store = dedupe.NewRedis(s.RDB, dedupe.RedisOptions{})
		return
	case BackendPostgres:
		url := testenv.PostgresURL(t)
		s.backendEnv = []string{"WAGATE_DEDUPE_BACKEND=postgres", "WAGATE_POSTGRES_URL=" + url}
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if s.store, err = dedupe.NewPostgres(pool, dedupe.PostgresOptions{}); err != nil {
			t.Fatal(err)
		}
		s.pool = pool
	case BackendDynamoDB:
		endpoint := testenv.DynamoDBEndpoint(t)
		s.backendEnv = append([]string{"WAGATE_DEDUPE_BACKEND=dynamodb", "WAGATE_DYNAMODB_ENDPOINT=" + endpoint}, dynamoEnv...)
		s.store = dedupe.NewDynamoDB(dynamodb.New(dynamodb.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String(endpoint),
			Credentials:  credentials.NewStaticCredentialsProvider("chaos", "chaos", ""),
		}), dedupe.DynamoDBOptions{})
	default:
		t.Fatalf("chaos: unknown backend %q", s.Cfg.Backend)
	}
	cmd := exec.CommandContext(ctx, s.Bins.Wagate, "dedupe", "init")
	cmd.Env = append(os.Environ(), s.backendEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wagate dedupe init: %v\n%s", err, out)
	}
	if s.pool != nil {
		if _, err := s.pool.Exec(ctx, pgMarksSQL); err != nil {
			t.Fatalf("chaos: marks trigger: %v", err)
		}
	}
}

// pgMarksSQL records every Begin (a new lock token) and done mark written
// to the PostgreSQL table, with the server's clock when the row is written
// (the same host's clock as the sink's), as Redis MONITOR does for Redis. A
// write is recorded before it commits; a Begin that would follow a done mark
// waits for that commit on the row lock, so the order holds.
const pgMarksSQL = `
CREATE TABLE chaos_marks (key text NOT NULL, fence bigint NOT NULL, done boolean NOT NULL, at timestamptz NOT NULL);
CREATE FUNCTION chaos_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'd' AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 'd') THEN
    INSERT INTO chaos_marks VALUES (NEW.key, NEW.fence, true, clock_timestamp());
  ELSIF NEW.lock_token IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.lock_token IS DISTINCT FROM OLD.lock_token) THEN
    INSERT INTO chaos_marks VALUES (NEW.key, NEW.fence, false, clock_timestamp());
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER chaos_mark AFTER INSERT OR UPDATE ON wagate_dedupe FOR EACH ROW EXECUTE FUNCTION chaos_mark();`

// pgMarks reads the marks the trigger recorded, in the server's order.
func (s *Stack) pgMarks(ctx context.Context) ([]Mark, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, fence, done, at FROM chaos_marks ORDER BY at`)
	if err != nil {
		return nil, err
	}
	var marks []Mark
	var m Mark
	_, err = pgx.ForEachRow(rows, []any{&m.Key, &m.Fence, &m.Done, &m.At}, func() error {
		marks = append(marks, m)
		return nil
	})
	return marks, err
}
