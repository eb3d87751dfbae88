package dedupe_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/dedupe/dedupetest"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// newDynamoClient returns a client of the DynamoDB-compatible server at
// endpoint, with test credentials.
func newDynamoClient(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

// newDynamoDB returns a store on c with its table created.
func newDynamoDB(t testing.TB, c *dynamodb.Client, opts dedupe.DynamoDBOptions) *dedupe.DynamoDB {
	t.Helper()
	s := dedupe.NewDynamoDB(c, opts)
	if err := s.InitTable(testCtx(t)); err != nil {
		t.Fatalf("InitTable: %v", err)
	}
	return s
}

// TestDynamoDB runs the contract suite. dynalite answers one request at a
// time, so the 1000-key batch (4000 requests) gets a server of its own: on
// the shared one it would hold up the subtests whose 200 ms locks must
// outlive a few requests.
func TestDynamoDB(t *testing.T) {
	table := "dedupetest_" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "_")
	shared := newDynamoClient(testenv.DynamoDBEndpoint(t))
	newDynamoDB(t, shared, dedupe.DynamoDBOptions{Table: table})
	batch := newDynamoClient(testenv.DynamoDBEndpoint(t))
	newDynamoDB(t, batch, dedupe.DynamoDBOptions{Table: table})
	dedupetest.Run(t, func(t *testing.T, horizon time.Duration) dedupe.Store {
		c := shared
		if strings.HasSuffix(t.Name(), "/ClaimBatch1000") {
			c = batch
		}
		return dedupe.NewDynamoDB(c, dedupe.DynamoDBOptions{Table: table, Horizon: horizon})
	})
}

// TestDynamoDBTable checks that InitTable is idempotent, that CheckTable
// finds a missing table, and that a table with another key is a clear error.
func TestDynamoDBTable(t *testing.T) {
	c := newDynamoClient(testenv.DynamoDBEndpoint(t))
	ctx := testCtx(t)
	s := dedupe.NewDynamoDB(c, dedupe.DynamoDBOptions{Table: "claims"})
	if err := s.CheckTable(ctx); !errors.Is(err, dedupe.ErrSchema) || !strings.Contains(err.Error(), "wagate dedupe init") {
		t.Fatalf("CheckTable before init = %v, want ErrSchema naming wagate dedupe init", err)
	}
	for range 2 {
		if err := s.InitTable(ctx); err != nil {
			t.Fatalf("InitTable: %v", err)
		}
	}
	if err := s.CheckTable(ctx); err != nil {
		t.Fatalf("CheckTable after init: %v", err)
	}
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String("other"),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("seq"), AttributeType: types.ScalarAttributeTypeN},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("seq"), KeyType: types.KeyTypeRange},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := dedupe.NewDynamoDB(c, dedupe.DynamoDBOptions{Table: "other"})
	err = o.InitTable(ctx)
	if !errors.Is(err, dedupe.ErrSchema) || !strings.Contains(err.Error(), "key schema [id HASH S, seq RANGE N]") {
		t.Fatalf("InitTable over a conflicting table = %v, want ErrSchema naming its key schema", err)
	}
}

// TestDynamoDBExpiredItem checks that an expired item DynamoDB has not yet
// deleted (TTL deletion is late) is absent to Lookup and overwritten by
// Claim and Begin, whatever state it held.
func TestDynamoDBExpiredItem(t *testing.T) {
	c := newDynamoClient(testenv.DynamoDBEndpoint(t))
	ctx := testCtx(t)
	s := newDynamoDB(t, c, dedupe.DynamoDBOptions{Table: "expired"})
	past := time.Now().Add(-time.Hour).Unix()
	put := func(key, state string, fence int64) {
		t.Helper()
		_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("expired"), Item: map[string]types.AttributeValue{
			"k": &types.AttributeValueMemberS{Value: key},
			"s": &types.AttributeValueMemberS{Value: state},
			"f": &types.AttributeValueMemberN{Value: itoa(fence)},
			"x": &types.AttributeValueMemberN{Value: itoa(past)},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	done, pending := messages.KeyOf("expired|done|"+t.Name()), messages.KeyOf("expired|pending|"+t.Name())
	put(done, "d", 7)
	put(pending, "p:old:1:x", 0)
	for _, k := range []string{done, pending} {
		if r, err := s.Lookup(ctx, k); err != nil || r != (dedupe.Record{}) {
			t.Fatalf("Lookup(expired %s) = %+v, %v; want the zero Record", k, r, err)
		}
	}
	cl, err := s.Claim(ctx, "i", []string{done})
	if err != nil || cl[0].Prior != dedupe.Absent {
		t.Fatalf("Claim(expired done) = %+v, %v; want absent", cl, err)
	}
	l, err := s.Begin(ctx, pending, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil || l.Fence != 1 {
		t.Fatalf("Begin(expired pending) = %+v, %v; want a lease with fence 1", l, err)
	}
	if r, err := s.Lookup(ctx, pending); err != nil || r.State != dedupe.Accepted || r.Fence != 1 || !r.Locked || r.TTL <= 0 {
		t.Fatalf("Lookup after Begin over an expired item = %+v, %v", r, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
