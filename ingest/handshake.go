package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/labstack/echo/v4"
)

// handshake answers the Cloud API verification request
// (GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…): the challenge
// as plain text when the mode is subscribe and the token matches
// Config.VerifyToken, 403 otherwise; a matching request without a challenge
// is answered 400, never an empty 200 that would look like a success. The tokens are compared through their
// SHA-256 in constant time, so neither their bytes nor their length leak. An
// empty configured token matches nothing.
func (s *Server) handshake(c echo.Context) error {
	q := c.QueryParams()
	token := q.Get("hub.verify_token")
	sum := sha256.Sum256([]byte(token))
	ok := subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
	if q.Get("hub.mode") != "subscribe" || s.cfg.VerifyToken == "" || token == "" || !ok {
		s.logRefusal("ingest: verification handshake refused", "subscribe", q.Get("hub.mode") == "subscribe", "token_present", token != "")
		return c.String(http.StatusForbidden, "forbidden")
	}
	challenge := q.Get("hub.challenge")
	if challenge == "" {
		s.logRefusal("ingest: verification handshake without a challenge")
		return c.String(http.StatusBadRequest, "missing hub.challenge")
	}
	s.log.Info("ingest: verification handshake accepted")
	c.Response().Header().Set("X-Content-Type-Options", "nosniff")
	return c.String(http.StatusOK, challenge)
}
