package messages

// CloudRef names a Cloud API message, status or call by its provider id:
// the parts of its identity that Parse reads from the item. Parse builds the
// identity of every such event with CloudRef.Identity, and so does
// "wagate key", so the two cannot drift.
type CloudRef struct {
	// Kind is KindMessage, KindStatus or KindCall.
	Kind Kind
	// Account is the phone_number_id the event came to (metadata).
	Account string
	// Field is the change's webhook field: messages, smb_message_echoes,
	// history or calls. "" means "messages" ("calls" for KindCall).
	Field string
	// ID is the wamid, or the call id ("wacid.…") of a call.
	ID string
	// Status is a status's value (sent, delivered, read, played, failed),
	// or a call status's (RINGING, ACCEPTED, REJECTED, …) when CallEvent is "".
	Status string
	// CallEvent is a calls[] element's event (connect, terminate); "" for a
	// call status.
	CallEvent string
	// Participant is the group participant a status is about
	// (recipient_participant_id); "" for none. Meta sends one status per
	// participant of a group message ("Webhooks for Groups API").
	Participant string
	// Reaction marks a reaction message, whose identity holds its Emoji:
	// a reaction and its removal (Emoji "") are two events, even where they
	// share an id.
	Reaction bool
	// Emoji is a reaction's emoji, as sent.
	Emoji string
}

// Identity returns r's identity:
//
//	cloud|message|<account>|<field>|<wamid>
//	cloud|message|<account>|<field>|<wamid>|reaction|<emoji>
//	cloud|status|<account>|<field>|<wamid>|<status>[|<participant>]
//	cloud|call|<account>|calls|<call id>|event|<event>
//	cloud|call|<account>|calls|<call id>|status|<status>[|<participant>]
//
// Fields that do not apply to r.Kind are ignored.
func (r CloudRef) Identity() string {
	field := r.Field
	if field == "" {
		field = "messages"
		if r.Kind == KindCall {
			field = "calls"
		}
	}
	parts := make([]string, 0, 8)
	parts = append(parts, ProviderCloud, string(r.Kind), r.Account, field, r.ID)
	switch {
	case r.Kind == KindStatus:
		parts = append(parts, r.Status)
	case r.Kind == KindCall && r.CallEvent != "":
		return Identity(append(parts, "event", r.CallEvent)...)
	case r.Kind == KindCall:
		parts = append(parts, "status", r.Status)
	case r.Reaction:
		return Identity(append(parts, "reaction", r.Emoji)...)
	default:
		return Identity(parts...)
	}
	if r.Participant != "" {
		parts = append(parts, r.Participant)
	}
	return Identity(parts...)
}
