package chaos

import (
	"context"
	"os"
	"os/exec"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
)

// The dedupe backends a scenario can run on (Config.Backend). Redis is the
// default; on the others the suite cannot see done marks as Redis MONITOR
// shows them, so re-runs after a done mark are counted as re-runs after a
// crash (which the scenarios without crashes of workers forbid outright).
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
}
