package messages

// contacts is a value's "contacts" array (Meta, "Webhooks reference:
// messages": profile.name, wa_id, user_id), indexed by wa_id to give each item
// the contact it came with.
type contacts struct {
	only  []byte            // the contact, when there is exactly one
	count int               // object elements
	list  []contact         // in document order, when few
	byID  map[string][]byte // first contact per wa_id, when many
}

type contact struct {
	waID string
	raw  []byte
}

// indexAbove is the number of contacts above which they are looked up in a
// map rather than by a scan, so that matching stays linear in the body.
const indexAbove = 16

// newContacts reads a contacts array; anything else gives no contacts.
func newContacts(raw []byte) *contacts {
	c := &contacts{}
	els, _ := elements(raw)
	for _, el := range els {
		ms, ok := members(el)
		if !ok {
			continue
		}
		c.count++
		c.only = el
		c.list = append(c.list, contact{waID: stringOf(lookup(ms, "wa_id")), raw: el})
	}
	if c.count != 1 {
		c.only = nil
	}
	if len(c.list) > indexAbove {
		c.byID = make(map[string][]byte, len(c.list))
		for _, ct := range c.list {
			if _, dup := c.byID[ct.waID]; !dup {
				c.byID[ct.waID] = ct.raw
			}
		}
		c.list = nil
	}
	return c
}

// match returns the first contact whose wa_id is from, else the only contact
// when there is exactly one, else nil.
func (c *contacts) match(from string) []byte {
	if from != "" {
		if c.byID != nil {
			if raw, ok := c.byID[from]; ok {
				return raw
			}
		}
		for _, ct := range c.list {
			if ct.waID == from {
				return ct.raw
			}
		}
	}
	return c.only
}
