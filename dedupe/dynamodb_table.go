package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// DynamoDBTableDefinition returns the table the DynamoDB backend needs, as
// the CreateTable request InitTable sends (on-demand capacity, partition
// key k of type S, no sort key); InitTable then turns on TTL on the
// attribute x.
func DynamoDBTableDefinition(table string) *dynamodb.CreateTableInput {
	if table == "" {
		table = DefaultDynamoDBTable
	}
	return &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(dynamoAttrKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(dynamoAttrKey), KeyType: types.KeyTypeHash}},
	}
}

// tableWait bounds the wait for a new table to become ACTIVE.
const tableWait = 5 * time.Minute

// InitTable creates the table (DynamoDBTableDefinition) if it does not
// exist, waits until it is ACTIVE, and turns on TTL on the attribute x
// where it is off (a server without the TTL API, such as dynalite, keeps
// expired items, which reads ignore); then it checks the table with CheckTable. An existing
// table that conflicts is an error wrapping ErrSchema, never altered. It is
// idempotent and safe while ingresses and workers use the table.
func (d *DynamoDB) InitTable(ctx context.Context) error {
	_, err := d.c.CreateTable(ctx, DynamoDBTableDefinition(*d.table))
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dedupe: dynamodb create table %s: %w", *d.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(d.c, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: d.table}, tableWait); err != nil {
		return fmt.Errorf("dedupe: dynamodb table %s never became active: %w", *d.table, err)
	}
	if err := d.checkKey(ctx); err != nil {
		return err
	}
	ttl, err := d.ttlAttribute(ctx)
	if err != nil {
		return err
	}
	if ttl == "" {
		_, err := d.c.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
			TableName:               d.table,
			TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(dynamoAttrExpires), Enabled: aws.Bool(true)},
		})
		if err != nil && !isUnknownOperation(err) {
			return fmt.Errorf("dedupe: dynamodb table %s: turn on TTL on %s: %w", *d.table, dynamoAttrExpires, err)
		}
	}
	return d.CheckTable(ctx)
}

// CheckTable checks that the table exists with partition key k of type S
// and no sort key, and that TTL is not on for another attribute than x. A
// missing or conflicting table is an error wrapping ErrSchema that names the
// difference (create it with `wagate dedupe init`). TTL that is off is no
// error (reads ignore expired items, but they stay and cost storage): see
// TTLAttribute. Other errors (connection, credentials) are wrapped.
func (d *DynamoDB) CheckTable(ctx context.Context) error {
	if err := d.checkKey(ctx); err != nil {
		return err
	}
	ttl, err := d.ttlAttribute(ctx)
	if err != nil {
		return err
	}
	if ttl != "" && ttl != dynamoAttrExpires {
		return fmt.Errorf("%w: table %s: TTL is on attribute %s, want %s", ErrSchema, *d.table, ttl, dynamoAttrExpires)
	}
	return nil
}

// TTLAttribute returns the attribute the table's TTL is on (enabled or
// being enabled; "x" once InitTable ran), or "" when TTL is off or the
// server has no TTL (dynalite). Errors are wrapped.
func (d *DynamoDB) TTLAttribute(ctx context.Context) (string, error) { return d.ttlAttribute(ctx) }

// checkKey checks the table's key schema.
func (d *DynamoDB) checkKey(ctx context.Context) error {
	out, err := d.c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: d.table})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return fmt.Errorf("%w: table %s does not exist (create it with: wagate dedupe init)", ErrSchema, *d.table)
	}
	if err != nil {
		return fmt.Errorf("dedupe: dynamodb describe table %s: %w", *d.table, err)
	}
	types_ := map[string]types.ScalarAttributeType{}
	for _, a := range out.Table.AttributeDefinitions {
		types_[aws.ToString(a.AttributeName)] = a.AttributeType
	}
	var keys []string
	for _, k := range out.Table.KeySchema {
		keys = append(keys, fmt.Sprintf("%s %s %s", aws.ToString(k.AttributeName), k.KeyType, types_[aws.ToString(k.AttributeName)]))
	}
	want := fmt.Sprintf("%s %s %s", dynamoAttrKey, types.KeyTypeHash, types.ScalarAttributeTypeS)
	if len(keys) != 1 || keys[0] != want {
		return fmt.Errorf("%w: table %s has key schema [%s], want [%s] (partition key %s of type S, no sort key)",
			ErrSchema, *d.table, strings.Join(keys, ", "), want, dynamoAttrKey)
	}
	return nil
}

// ttlAttribute is TTLAttribute.
func (d *DynamoDB) ttlAttribute(ctx context.Context) (string, error) {
	out, err := d.c.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: d.table})
	if isUnknownOperation(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("dedupe: dynamodb describe TTL of %s: %w", *d.table, err)
	}
	desc := out.TimeToLiveDescription
	if desc == nil {
		return "", nil
	}
	switch desc.TimeToLiveStatus {
	case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
		return aws.ToString(desc.AttributeName), nil
	}
	return "", nil
}

// isUnknownOperation reports whether err says the server does not know the
// operation.
func isUnknownOperation(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	code := ae.ErrorCode()
	return code == "UnknownOperationException" || strings.Contains(code, "UnknownOperation")
}
