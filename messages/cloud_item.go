package messages

import "strings"

// item turns one messages[], message_echoes[], statuses[] or calls[] element
// (or a history message) into an event of kind, marked with dir (see
// Event.Direction). It returns false, making no event, when raw is not an
// object. isStatus says raw is a statuses[] element: of a message (kind
// KindStatus) or of a call (kind KindCall).
//
// Item fields read (Meta, "Webhooks reference: messages", "Status messages
// webhook reference", "smb_message_echoes webhook reference", "history
// webhook reference", "Webhooks for Groups API"; Calling API "API and Webhook
// Reference"): "id" (the wamid, or the call id "wacid.…"), "timestamp" (Unix
// seconds as a string), "type" (message type; "call" on call statuses),
// "from" (messages and calls), "to" (echoes), "recipient_id", "status",
// "recipient_participant_id" (group statuses; the Groups API page's read
// example spells it "participant_recipient_id"), "recipient_participant_user_id"
// (its business-scoped user id) on statuses, "event" (calls), "reaction"
// (reaction messages: "emoji"), "errors".
func (p *cloudParser) item(kind Kind, dir string, isStatus bool, at *placement, contacts *contacts, raw []byte) bool {
	ms, ok := members(raw)
	if !ok {
		return false
	}
	ev := p.event(kind, at, raw)
	ev.Direction = dir
	id, idOK := decodeString(lookup(ms, "id"))
	ev.ID = id
	ev.Timestamp = unixSeconds(lookup(ms, "timestamp"))
	ev.Errors = providerErrors(lookup(ms, "errors"))
	usable := idOK && id != "" && !strings.ContainsRune(id, '\uFFFD')
	ref := CloudRef{Kind: kind, Account: ev.Account, Field: at.field, ID: id}
	switch {
	case isStatus:
		ev.Type = stringOf(lookup(ms, "type"))
		ev.From = stringOf(lookup(ms, "recipient_id"))
		status, ok := decodeString(lookup(ms, "status"))
		ev.Status = status
		usable = usable && ok && status != ""
		ref.Status = status
		ref.Participant = groupParticipant(ms)
	case kind == KindCall:
		event, ok := decodeString(lookup(ms, "event"))
		ev.Type = event
		ev.Status = stringOf(lookup(ms, "status"))
		ev.From = stringOf(lookup(ms, "from"))
		usable = usable && ok && event != ""
		ref.CallEvent = event
	default:
		ev.Type = stringOf(lookup(ms, "type"))
		ev.From = stringOf(lookup(ms, "from"))
		if dir == "outbound" {
			ev.From = stringOf(lookup(ms, "to"))
		}
		if ev.Type == "reaction" {
			rc, _ := members(lookup(ms, "reaction"))
			ref.Reaction, ref.Emoji = true, stringOf(lookup(rc, "emoji"))
		}
	}
	ev.Context.Contact = contacts.match(ev.From)
	ev.Conversation = cloudConversation(ev.Account, ms, ev.From)
	if !usable {
		ev.Fallback = true
		ev.Identity = fallbackIdentity(&ev)
	} else {
		ev.Identity = ref.Identity()
	}
	p.add(ev)
	return true
}

// groupParticipant returns the group participant a status is about
// (recipient_participant_id, its misspelling participant_recipient_id, or
// the business-scoped recipient_participant_user_id), or "" for a status
// that is not about a group participant. Meta sends one status per
// participant of a group message ("Webhooks for Groups API").
func groupParticipant(ms []member) string {
	for _, name := range []string{"recipient_participant_id", "participant_recipient_id", "recipient_participant_user_id"} {
		if s := stringOf(lookup(ms, name)); s != "" {
			return s
		}
	}
	return ""
}

// valueError turns one value.errors[] element into a KindError event. It
// returns false, making no event, when raw is not an object.
func (p *cloudParser) valueError(at *placement, raw []byte) bool {
	if !isObject(raw) {
		return false
	}
	ev := p.event(KindError, at, raw)
	if e, ok := providerError(raw); ok {
		ev.Errors = []Error{e}
	}
	ev.Identity = placedIdentity(&ev, "")
	p.add(ev)
	return true
}

// field makes the KindField event of a change of a field other than
// "messages" and "calls"; its item is the whole change.
func (p *cloudParser) field(at *placement, change []byte) {
	ev := p.event(KindField, at, change)
	ev.Type = at.field
	ev.Identity = placedIdentity(&ev, "")
	p.add(ev)
}

// unknown makes a KindUnknown event of raw, found at where.
func (p *cloudParser) unknown(at *placement, where string, raw []byte) {
	ev := p.event(KindUnknown, at, raw)
	ev.Type = where
	ev.Identity = placedIdentity(&ev, where)
	p.add(ev)
}

// event returns an event of kind for raw, placed at at, without identity.
func (p *cloudParser) event(kind Kind, at *placement, raw []byte) Event {
	return Event{
		Provider:   ProviderCloud,
		Kind:       kind,
		Account:    at.account,
		ReceivedAt: p.receivedAt,
		Item:       raw,
		Context: Context{
			Object:    p.object,
			EntryID:   at.entryID,
			EntryTime: at.entryTime,
			Field:     at.field,
			Metadata:  at.metadata,
			Frame: Frame{
				Object:           p.rawObject,
				EntryID:          at.rawEntryID,
				EntryTime:        at.rawEntryTime,
				Field:            at.rawField,
				MessagingProduct: at.rawProduct,
				Array:            at.rawArray,
				Before:           at.wrapBefore,
				After:            at.wrapAfter,
			},
		},
	}
}

// add sets ev's key from its identity and appends it.
func (p *cloudParser) add(ev Event) {
	over(p.max, len(p.events))
	ev.Key = KeyOf(ev.Identity)
	p.events = append(p.events, ev)
}

// providerErrors reads an "errors" array leniently: elements that are not
// objects are skipped, members of the wrong type are left zero. It returns
// nil when there is no error to report.
func providerErrors(raw []byte) []Error {
	els, _ := elements(raw)
	var errs []Error
	for _, el := range els {
		if e, ok := providerError(el); ok {
			errs = append(errs, e)
		}
	}
	return errs
}

// providerError reads one error object (Meta, "Error codes"): code, title,
// message, error_data.details and href.
func providerError(raw []byte) (Error, bool) {
	ms, ok := members(raw)
	if !ok {
		return Error{}, false
	}
	code, _ := intOf(lookup(ms, "code"))
	if code != int64(int(code)) {
		code = 0
	}
	data, _ := members(lookup(ms, "error_data"))
	return Error{
		Code:    int(code),
		Title:   stringOf(lookup(ms, "title")),
		Message: stringOf(lookup(ms, "message")),
		Details: stringOf(lookup(data, "details")),
		Href:    stringOf(lookup(ms, "href")),
	}, true
}
