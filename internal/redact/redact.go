// Package redact is wagate's one rule for personal data and credentials in
// what a process writes (logs, errors, dead-letter headers): phone numbers
// keep at most their last 4 digits, URLs lose their user information and
// their query values. Every process (ingress, worker, wagate) uses it.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// PhoneKeep is the most characters of a phone number Phone keeps: the last 4.
const PhoneKeep = 4

// Phone hides all but the last PhoneKeep characters of a phone number (or of
// any sender id: a WhatsApp id is a phone number), each hidden character
// becoming '*': "15550000001" becomes "*******0001". A value of PhoneKeep
// characters or fewer is hidden whole ("****"); the empty string stays empty.
// Lengths count characters, not bytes.
func Phone(p string) string {
	r := []rune(p)
	if len(r) == 0 {
		return ""
	}
	if len(r) <= PhoneKeep {
		return "****"
	}
	for i := range len(r) - PhoneKeep {
		r[i] = '*'
	}
	return string(r)
}

// Hidden replaces a redacted credential or query value.
const Hidden = "xxxxx"

// URL returns raw with its user information (user name and password, or a
// lone token as in nats://<token>@host) and every query value replaced by
// Hidden; query names are kept, so "?token=abc&x=1" becomes
// "?token=xxxxx&x=xxxxx". A fragment is dropped. A value that does not
// parse as a URL becomes "(unparsable URL)": it may hold a credential.
func URL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "(unparsable URL)"
	}
	return redacted(u)
}

// redacted is URL for a parsed u; u is not changed.
func redacted(u *url.URL) string {
	c := *u
	if c.User != nil {
		if _, ok := c.User.Password(); ok {
			c.User = url.UserPassword(c.User.Username(), Hidden)
		} else {
			c.User = url.User(Hidden)
		}
	}
	if c.RawQuery != "" {
		q, err := url.ParseQuery(c.RawQuery)
		if err != nil {
			c.RawQuery = "(redacted)"
		} else {
			var b strings.Builder
			for name := range q {
				if b.Len() > 0 {
					b.WriteByte('&')
				}
				b.WriteString(url.QueryEscape(name) + "=" + Hidden)
			}
			c.RawQuery = b.String()
		}
	}
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// urlInText finds what looks like an absolute URL in free text.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// Text returns s with every absolute URL in it redacted as URL does: for
// error texts that quote a URL (net/http's *url.Error, a downstream's
// answer) before they are logged or stored.
func Text(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, URL)
}
