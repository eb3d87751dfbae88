package messages

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// A conversation is the business number plus the other party: the unit in
// which wagate's workers keep order when asked to (WAGATE_ORDER=conversation).
// Event.Conversation names it; per provider:
//
//   - Cloud API: the phone_number_id (Event.Account) and, for a message, an
//     echo, a history message, a status or a call, the user's wa_id (the
//     message's "from", the echo's "to", the status's "recipient_id"); for a
//     group message the group's "group_id", and for a status of a group
//     message its "recipient_id", which is the group id there
//     ("recipient_type": "group"; Meta, "Webhooks for Groups API").
//     <account>|group:<group id> or <account>|user:<wa_id>.
//   - Gateways (WASenderApi, WAHA, Evolution API): the session and the chat.
//     A group, broadcast or newsletter chat is named by its address
//     (…@g.us, …@broadcast, …@newsletter); a one-to-one chat by the other
//     party's phone number when the gateway gives it (Event.From), else by
//     the chat's address as written.
//     <session>|chat:<group address> or <session>|user:<phone or address>.
//
// Field changes, value-level errors and unknown items belong to no
// conversation: their Conversation is empty and they are never held for
// order.
//
// A one-to-one gateway chat that a gateway names only by a LID (…@lid) in one
// delivery and by a phone number in another counts as two conversations
// where the gateway gives no phone number: order holds within each.

// groupConversation and userConversation start the party part of a
// conversation.
const (
	groupConversation = "group:"
	chatConversation  = "chat:"
	userConversation  = "user:"
)

// conversationOf joins a business account and a party into a conversation
// as Identity joins parts (escaped, a part longer than MaxIdentityPart
// written as its hash, so that a hostile body cannot make it long); empty
// when the party is.
func conversationOf(provider, account, party string) string {
	if party == "" {
		return ""
	}
	return Identity(provider, account, party)
}

// cloudConversation returns the conversation of a Cloud API item: the group
// when the item names one (group_id, or a status whose recipient_type is
// "group"), else the user (Event.From).
func cloudConversation(account string, ms []member, from string) string {
	if gid := stringOf(lookup(ms, "group_id")); gid != "" {
		return conversationOf(ProviderCloud, account, groupConversation+gid)
	}
	if from == "" {
		return ""
	}
	if stringOf(lookup(ms, "recipient_type")) == "group" {
		return conversationOf(ProviderCloud, account, groupConversation+from)
	}
	return conversationOf(ProviderCloud, account, userConversation+from)
}

// gatewayConversation returns the conversation of a gateway message or status
// in chat (its address as written) with the other party from.
func gatewayConversation(provider, session, chat, from string) string {
	if c := stableChat(chat); c != chatDirect {
		return conversationOf(provider, session, chatConversation+c)
	}
	if from != "" {
		return conversationOf(provider, session, userConversation+from)
	}
	if chat = strings.ToLower(strings.TrimSpace(chat)); chat != "" {
		return conversationOf(provider, session, userConversation+chat)
	}
	return ""
}

// ConversationToken returns the token that stands for ev's conversation in
// HeaderConversation: "c" and the first 64 bits of the SHA-256 of
// Event.Conversation in hex, or "_" when the event belongs to no
// conversation. Phone numbers and group ids never appear in a stream
// message's subject or headers as they are.
func ConversationToken(ev Event) string {
	token, _ := conversationSlot(ev)
	return token
}

// Slots is the number of slots the events stream is cut into by the last
// token of an event's subject: the workers keeping order (worker
// OrderConversation) read each slot through a partition consumer of its own,
// so it bounds the workers that share ordered events. 32, not more: each
// partition consumer costs the NATS server its own state writes and a scan
// past the other slots' messages, measured at 0.77 of unordered throughput
// with 64 partitions, 0.9 to 1.0 with 32 and 16 (scripts/bench, phase order).
const Slots = 32

// Slot returns ev's slot, in [0, Slots): every event of one conversation has
// the same slot, taken from the same 64 bits of the SHA-256 of
// Event.Conversation as its token; an event of no conversation takes the
// slot of its key, so that such events spread over every slot.
func Slot(ev Event) int {
	_, slot := conversationSlot(ev)
	return slot
}

// conversationSlot returns ConversationToken(ev) and Slot(ev), hashing once.
func conversationSlot(ev Event) (token string, slot int) {
	if ev.Conversation == "" {
		sum := sha256.Sum256([]byte(ev.Key))
		return "_", int(binary.BigEndian.Uint64(sum[:8]) % Slots)
	}
	sum := sha256.Sum256([]byte(ev.Conversation))
	return "c" + hex.EncodeToString(sum[:8]), int(binary.BigEndian.Uint64(sum[:8]) % Slots)
}
