package messages

import "strings"

// item turns one messages[], statuses[] or calls[] element into an event. It
// returns false, making no event, when raw is not an object.
//
// Item fields read (Meta, "Webhooks reference: messages", "Status messages
// webhook reference"; Calling API "API and Webhook Reference"): "id" (the
// wamid, or the call id "wacid.…"), "timestamp" (Unix seconds as a string),
// "type" (message type; "call" on call statuses), "from" (messages and calls),
// "recipient_id" and "status" (statuses), "event" (calls), "errors".
func (p *cloudParser) item(kind Kind, at *placement, contacts *contacts, raw []byte) bool {
	ms, ok := members(raw)
	if !ok {
		return false
	}
	ev := p.event(kind, at, raw)
	id, idOK := decodeString(lookup(ms, "id"))
	ev.ID = id
	ev.Timestamp = unixSeconds(lookup(ms, "timestamp"))
	ev.Errors = providerErrors(lookup(ms, "errors"))
	usable := idOK && id != "" && !strings.ContainsRune(id, '\uFFFD')
	var second string // the id part after the wamid or call id
	switch kind {
	case KindStatus:
		ev.Type = stringOf(lookup(ms, "type"))
		ev.From = stringOf(lookup(ms, "recipient_id"))
		status, ok := decodeString(lookup(ms, "status"))
		ev.Status = status
		usable = usable && ok && status != ""
		second = status
	case KindCall:
		event, ok := decodeString(lookup(ms, "event"))
		ev.Type = event
		ev.From = stringOf(lookup(ms, "from"))
		usable = usable && ok && event != ""
		second = event
	default:
		ev.Type = stringOf(lookup(ms, "type"))
		ev.From = stringOf(lookup(ms, "from"))
	}
	ev.Context.Contact = contacts.match(ev.From)
	switch {
	case !usable:
		ev.Fallback = true
		ev.Identity = fallbackIdentity(&ev)
	case kind == KindMessage:
		ev.Identity = Identity(ProviderCloud, string(kind), ev.Account, id)
	default:
		ev.Identity = Identity(ProviderCloud, string(kind), ev.Account, id, second)
	}
	p.add(ev)
	return true
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
		},
	}
}

// add sets ev's key from its identity and appends it.
func (p *cloudParser) add(ev Event) {
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
