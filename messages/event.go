package messages

import (
	"encoding/json"
	"time"
)

// Kind says what an Event is.
type Kind string

// The kinds of Event.
const (
	KindMessage Kind = "message" // a message: inbound, or outbound or historical (see Event.Direction)
	KindStatus  Kind = "status"  // a status of a message: sent, delivered, read, played, failed, deleted
	KindCall    Kind = "call"    // a calling event (an item of the calls field, a gateway's call)
	KindField   Kind = "field"   // a change of a non-message field (template status, account update, …)
	KindError   Kind = "error"   // a value-level error (value.errors[] item)
	KindUnknown Kind = "unknown" // anything inside a valid envelope that wagate does not recognise
)

// Providers (see also ProviderWASender, ProviderWAHA, ProviderEvolution).
const (
	// ProviderCloud is Meta's WhatsApp Business Cloud API.
	ProviderCloud = "cloud"
)

// Event is one item of a webhook: the unit that is claimed, stored, processed
// and acknowledged. Its JSON form is the payload of the stream message.
type Event struct {
	// Key is the dedupe key: a fixed-length hash of Identity ("wa:" + 22
	// characters of base64url). Safe as a Redis key and a Nats-Msg-Id.
	Key string `json:"key"`
	// Identity is the human-readable string Key is derived from: provider,
	// kind and the provider's own id fields.
	Identity string `json:"identity"`
	// Provider is the source of the event, for example ProviderCloud.
	Provider string `json:"provider"`
	// Kind says what the event is.
	Kind Kind `json:"kind"`
	// Account is the business account the event belongs to: for the Cloud API
	// the phone_number_id from value.metadata, else the WABA id (entry.id);
	// empty for an unknown item outside any entry. For a gateway, its session
	// (see ParseWASender, ParseWAHA).
	Account string `json:"account"`
	// ID is the provider's id of the item: the wamid of a message or status,
	// the call id ("wacid.…"); empty when the item has none or its id is not
	// a string.
	ID string `json:"id"`
	// Type is the message type (text, image, …), the call event (connect,
	// terminate), or the changed field's name; for a status, its "type" when
	// it has one ("call" on call statuses); for an unknown event, where the
	// item was (see Parse). Empty when the item has none.
	Type string `json:"type,omitempty"`
	// Status is the status value (sent, delivered, read, played, failed; for
	// calls RINGING, ACCEPTED, REJECTED); statuses only.
	Status string `json:"status,omitempty"`
	// From is the sender (messages: from) or recipient (statuses:
	// recipient_id; Cloud API echoes: to) as the provider wrote it; empty
	// when the item has none.
	// For a gateway, the other party, as a phone number when known.
	From string `json:"from"`
	// Conversation is the business number plus the other party: the unit of
	// order (see the package documentation on conversations). Empty for an
	// event of no conversation (a field change, an error, an unknown item).
	Conversation string `json:"conversation,omitempty"`
	// Timestamp is the provider's time of the item, in Unix seconds; 0 when
	// the item has none or it is malformed. Meta writes it as a string of
	// digits; a JSON number is accepted too.
	Timestamp int64 `json:"timestamp"`
	// ReceivedAt is when the ingress received the request.
	ReceivedAt time.Time `json:"received_at"`
	// Fallback is true when the provider's id was missing or unusable and the
	// identity was built from sender, timestamp and a content hash.
	Fallback bool `json:"fallback,omitempty"`
	// Transient is true when the item has neither an id nor a time of its
	// own (a gateway's session state, a Cloud API field change without
	// entry time): the same content reported again later is a new event, so
	// its identity ends with the repeat window it was received in (see
	// Window). Its Fallback is not set.
	Transient bool `json:"transient,omitempty"`
	// Direction says, for a message the business sent or one from the
	// account's history, where it comes from: "outbound" (a Cloud API
	// smb_message_echoes item, a gateway message with fromMe) or "history"
	// (a Cloud API history item); empty for an inbound message and for
	// other kinds.
	Direction string `json:"direction,omitempty"`
	// Errors are the provider's errors carried by the item (a failed status,
	// an unsupported message, a value-level error).
	Errors []Error `json:"errors,omitempty"`
	// Item is the item's raw JSON exactly as received, escapes and
	// whitespace included. For a field change it is the whole change object
	// ({"field": …, "value": …}).
	Item json.RawMessage `json:"item"`
	// Context is where the item came from in the webhook.
	Context Context `json:"context"`
}

// Context is what an item came with: the placement and shared data of the
// webhook that held it.
type Context struct {
	// Object is the envelope's object, "whatsapp_business_account" for the Cloud API.
	Object string `json:"object,omitempty"`
	// EntryID is entry[].id: the WABA id for the Cloud API.
	EntryID string `json:"entry_id,omitempty"`
	// EntryTime is entry[].time in Unix seconds, when present.
	EntryTime int64 `json:"entry_time,omitempty"`
	// Field is changes[].field, for example "messages"; for a gateway, the
	// event name, for example "messages.upsert".
	Field string `json:"field,omitempty"`
	// Metadata is value.metadata as received (display_phone_number,
	// phone_number_id); for WAHA, the envelope's metadata object.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Contact is the value.contacts[] item matching the item, as received: the
	// first whose wa_id equals From, else the only contact when there is
	// exactly one; empty otherwise.
	Contact json.RawMessage `json:"contact,omitempty"`
	// Frame is the rest of the webhook around the item, as received, from
	// which the item can be sent on in its provider's own format (see Frame).
	Frame Frame `json:"frame,omitzero"`
}

// Error is a provider error carried by an item. Source: Meta, "Error codes"
// (developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
type Error struct {
	Code    int    `json:"code"`
	Title   string `json:"title,omitempty"`
	Message string `json:"message,omitempty"`
	Details string `json:"details,omitempty"` // error_data.details
	Href    string `json:"href,omitempty"`
}
