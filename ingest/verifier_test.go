package ingest

import (
	"net/http"
	"strings"
	"testing"
)

// The WASenderApi check: the header must equal one of the secrets exactly.
func TestTokenVerifier(t *testing.T) {
	v := newTokenVerifier([][]byte{[]byte("first-secret"), []byte("second-secret")})
	cases := []struct {
		header []string
		want   bool
	}{
		{[]string{"first-secret"}, true},
		{[]string{"second-secret"}, true},
		{nil, false},
		{[]string{""}, false},
		{[]string{"first-secre"}, false},
		{[]string{"first-secret "}, false},
		{[]string{"first-secretx"}, false},
		{[]string{"FIRST-SECRET"}, false},
		{[]string{"first-secret,second-secret"}, false},
		{[]string{"sha256=" + strings.Repeat("0", 64)}, false},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.header != nil {
			h[HeaderWASenderSignature] = c.header
		}
		if got := v.Verify(h, []byte(`{"any":"body"}`)); got != c.want {
			t.Errorf("header %q: %v, want %v", c.header, got, c.want)
		}
	}
	// The verifier keeps digests, not the secrets.
	for _, sum := range v.(tokenVerifier) {
		if strings.Contains(string(sum[:]), "secret") {
			t.Error("a secret is kept as it is")
		}
	}
}

// The WAHA check: HMAC-SHA512 of the exact body, sha512 only.
func TestWAHAVerifier(t *testing.T) {
	body := []byte(`{"event":"message","session":"default","payload":{"body":"caf\u00e9"}}`)
	v := wahaVerifier{[]byte("old-key"), []byte("new-key")}
	good := SignWAHA(body, "new-key")
	cases := []struct {
		name string
		sig  string
		alg  string
		body []byte
		want bool
	}{
		{"signed", good, "sha512", body, true},
		{"first key", SignWAHA(body, "old-key"), "sha512", body, true},
		{"no algorithm header", good, "", body, true},
		{"algorithm in capitals", good, "SHA512", body, true},
		{"hex in capitals", strings.ToUpper(good), "sha512", body, true},
		{"other key", SignWAHA(body, "key"), "sha512", body, false},
		{"body changed", good, "sha512", append([]byte(nil), strings.Replace(string(body), `\u00e9`, "é", 1)...), false},
		{"sha256 claimed", good, "sha256", body, false},
		{"truncated", good[:len(good)-2], "sha512", body, false},
		{"not hex", "zz" + good[2:], "sha512", body, false},
		{"missing", "", "sha512", body, false},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.sig != "" {
			h.Set(HeaderWAHAHmac, c.sig)
		}
		if c.alg != "" {
			h.Set(HeaderWAHAHmacAlgorithm, c.alg)
		}
		if got := v.Verify(h, c.body); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// The Cloud API verifier is the X-Hub-Signature-256 check.
func TestCloudVerifier(t *testing.T) {
	body := []byte(`{"object":"whatsapp_business_account","entry":[]}`)
	v := cloudVerifier{[]byte(testSecret)}
	h := http.Header{}
	if err := SignRequest(h, "cloud", body, testSecret); err != nil {
		t.Fatal(err)
	}
	if !v.Verify(h, body) || v.Verify(h, append(body, ' ')) || v.Verify(http.Header{}, body) {
		t.Error("cloud verifier: wrong answers")
	}
}

// The Evolution API check: "Authorization: Bearer <token>", the token equal
// to one of them exactly.
func TestBearerVerifier(t *testing.T) {
	v := newBearerVerifier([][]byte{[]byte("first-token"), []byte("second-token")})
	cases := []struct {
		header []string
		want   bool
	}{
		{[]string{"Bearer first-token"}, true},
		{[]string{"Bearer second-token"}, true},
		{[]string{"bearer first-token"}, true},
		{nil, false},
		{[]string{""}, false},
		{[]string{"first-token"}, false},
		{[]string{"Bearer "}, false},
		{[]string{"Bearer first-toke"}, false},
		{[]string{"Bearer first-token "}, false},
		{[]string{"Basic first-token"}, false},
		{[]string{"Bearer FIRST-TOKEN"}, false},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.header != nil {
			h[HeaderEvolutionToken] = c.header
		}
		if got := v.Verify(h, []byte(`{"any":"body"}`)); got != c.want {
			t.Errorf("header %q: %v, want %v", c.header, got, c.want)
		}
	}
	for _, sum := range v.(bearerVerifier) {
		if strings.Contains(string(sum[:]), "token") {
			t.Error("a token is kept as it is")
		}
	}
}
