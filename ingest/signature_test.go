package ingest

import (
	"strings"
	"testing"
)

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"object":"whatsapp_business_account","entry":[]}`)
	secrets := [][]byte{[]byte("first"), []byte("second")}
	good := Sign(body, "second")
	cases := []struct {
		name   string
		body   []byte
		header string
		want   bool
	}{
		{"first secret", body, Sign(body, "first"), true},
		{"second secret", body, good, true},
		{"uppercase hex", body, "sha256=" + strings.ToUpper(strings.TrimPrefix(good, "sha256=")), true},
		{"other secret", body, Sign(body, "third"), false},
		{"missing", body, "", false},
		{"no prefix", body, strings.TrimPrefix(good, "sha256="), false},
		{"uppercase prefix", body, "SHA256=" + strings.TrimPrefix(good, "sha256="), false},
		{"sha1", body, "sha1=" + strings.TrimPrefix(good, "sha256=")[:40], false},
		{"short", body, good[:len(good)-2], false},
		{"long", body, good + "00", false},
		{"not hex", body, good[:len(good)-2] + "zz", false},
		{"spaces", body, " " + good, false},
		{"body changed", append([]byte(" "), body...), good, false},
		{"empty body", []byte{}, Sign([]byte{}, "first"), true},
	}
	for _, c := range cases {
		if got := verifySignature(c.body, c.header, secrets); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	if verifySignature(body, good, nil) {
		t.Error("no secrets: a signature verified")
	}
}

func TestSignMatchesMeta(t *testing.T) {
	// HMAC-SHA256("hello", "secret"), as openssl dgst -sha256 -hmac secret computes it.
	const want = "sha256=88aab3ede8d3adf94d26ab90d3bafd4a2083070c3bcce9c014ee04a443847c0b"
	if got := Sign([]byte("hello"), "secret"); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}
