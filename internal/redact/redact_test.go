package redact

import (
	"strings"
	"testing"
)

// One rule for every process: at most the last 4 digits of a phone number.
func TestPhone(t *testing.T) {
	for in, want := range map[string]string{
		"":             "",
		"1":            "****",
		"1234":         "****",
		"12345":        "*2345",
		"123456789":    "*****6789",
		"15550000001":  "*******0001",
		"+15550000001": "********0001",
		"٣٣٣٣٣٣":       "**٣٣٣٣",
	} {
		got := Phone(in)
		if got != want {
			t.Errorf("Phone(%q) = %q, want %q", in, got, want)
		}
		if digits := strings.Count(strings.Map(func(r rune) rune {
			if r == '*' {
				return -1
			}
			return r
		}, got), "") - 1; digits > PhoneKeep {
			t.Errorf("Phone(%q) = %q shows %d characters, want at most %d", in, got, digits, PhoneKeep)
		}
	}
}

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://example.com/hook":                      "https://example.com/hook",
		"https://user:pw@example.com/hook":              "https://user:xxxxx@example.com/hook",
		"nats://tok3n@nats:4222":                        "nats://xxxxx@nats:4222",
		"https://example.com/hook?token=s3cret":         "https://example.com/hook?token=xxxxx",
		"https://example.com/hook?token=s3cret#frag":    "https://example.com/hook?token=xxxxx",
		"https://u:p@example.com/h?a=1&a=2":             "https://u:xxxxx@example.com/h?a=xxxxx",
		"http://[::1]:%zz/":                             "(unparsable URL)",
		"https://example.com/hook?k=%zz&token=s3cretvv": "https://example.com/hook?(redacted)",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestText(t *testing.T) {
	in := `forward: Post "https://user:pw@example.com/hook?token=s3cret": dial tcp 127.0.0.1:9: connection refused`
	got := Text(in)
	for _, secret := range []string{"pw", "s3cret"} {
		if strings.Contains(got, secret) {
			t.Errorf("Text(%q) = %q: still holds %q", in, got, secret)
		}
	}
	if !strings.Contains(got, "example.com/hook?token=xxxxx") || !strings.Contains(got, "connection refused") {
		t.Errorf("Text(%q) = %q: lost the host, path, query name or the rest of the text", in, got)
	}
	if plain := "no url here"; Text(plain) != plain {
		t.Errorf("Text changed %q", plain)
	}
}
