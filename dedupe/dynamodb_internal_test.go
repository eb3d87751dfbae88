package dedupe

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// TestDynamoDBRefusedItem checks that the item DynamoDB returns with a
// refused condition (ReturnValuesOnConditionCheckFailure ALL_OLD) is used as
// it is, without a read: dynalite returns none, so the contract suite runs
// only the read-back path.
func TestDynamoDBRefusedItem(t *testing.T) {
	d := NewDynamoDB(nil, DynamoDBOptions{}) // a read would panic on the nil client
	returned := map[string]types.AttributeValue{
		"k":  &types.AttributeValueMemberS{Value: "wa:x"},
		"s":  &types.AttributeValueMemberS{Value: "p:ingress-a:1700000000000:abc"},
		"f":  &types.AttributeValueMemberN{Value: "3"},
		"lt": &types.AttributeValueMemberS{Value: "tok"},
		"lu": &types.AttributeValueMemberN{Value: "1700000005000"},
		"x":  &types.AttributeValueMemberN{Value: "1700600000"},
	}
	it, found, err := d.refused(context.Background(), "wa:x", returned)
	if err != nil || !found {
		t.Fatalf("refused: %v, %v", found, err)
	}
	want := dynamoItem{state: "p:ingress-a:1700000000000:abc", fence: 3, lockToken: "tok", lockUntil: 1700000005000, expires: 1700600000}
	if it != want {
		t.Fatalf("refused item %+v, want %+v", it, want)
	}
	if !it.live(1700000000000) || it.live(1700600000000) || !it.locked(1700000004999) || it.locked(1700000005000) {
		t.Fatalf("live/locked boundaries wrong for %+v", it)
	}
	if _, _, err := parseDynamoItem(map[string]types.AttributeValue{"f": &types.AttributeValueMemberN{Value: "1.5"}}); err == nil {
		t.Fatal("a fence that is not an integer parsed without error")
	}
}
