package messages_test

import (
	"math/rand"
	"testing"

	"github.com/wagate/wagate/messages"
)

// A reaction that reaches WASenderApi or Evolution API as a message
// (messages.upsert and its kin, holding a reactionMessage) is told apart by
// its target and emoji, as messages.reaction is: a reaction and its removal
// are two events. Two edits of one message (Evolution API messages.edited)
// are told apart by their content.
func TestPropertyBaileysReactionsAndEdits(t *testing.T) {
	gen := map[string]func(r *rand.Rand) string{
		"ws": space, "id": hexID, "target": hexID,
		"emoji":  pick("👍", "", "❤️", "😂"),
		"text":   pick("hello", "hello!", "see you at 5", "ok"),
		"direct": userAddress("s.whatsapp.net"),
		"ts":     digits(3),
		"wsev":   pick("messages.upsert", "messages.received", "messages-personal.received"),
		"evoev":  pick("messages.upsert", "MESSAGES_UPSERT", "send.message"),
	}
	reaction := func(p map[string]string) string {
		return `{"key":{"remoteJid":"` + p["direct"] + `","fromMe":false,` + p["ws"] + `"id":"` + p["id"] + `"},"message":{"reactionMessage":{"key":{"remoteJid":"` + p["direct"] +
			`","fromMe":true,"id":"` + p["target"] + `"},"text":"` + p["emoji"] + `","senderTimestampMs":"1767261600000"}},"messageType":"reactionMessage","messageTimestamp":1767261600}`
	}
	for _, c := range []propCase{{
		name: "wasender reaction as a message", parse: messages.ParseWASender, gen: gen,
		body: func(p map[string]string) string {
			return `{"event":"` + p["wsev"] + `","sessionId":"s1","timestamp":1767261` + p["ts"] + `,"data":{"messages":` + reaction(p) + `}}`
		},
		meaning: []string{"id", "target", "emoji"}, unstable: []string{"ws", "ts", "direct", "wsev"},
	}, {
		name: "evolution reaction as a message", parse: messages.ParseEvolution, gen: gen,
		body: func(p map[string]string) string {
			return `{"event":"` + p["evoev"] + `","instance":"shop","data":` + reaction(p) + `,"date_time":"2025-11-21T21:25:03.` + p["ts"] + `Z","apikey":"k"}`
		},
		meaning: []string{"id", "target", "emoji"}, unstable: []string{"ws", "ts", "direct", "evoev"},
	}, {
		name: "evolution edit", parse: messages.ParseEvolution, gen: gen,
		body: func(p map[string]string) string {
			return `{"event":"messages.edited","instance":"shop","data":{"key":{"remoteJid":"` + p["direct"] + `","fromMe":true,` + p["ws"] + `"id":"` + p["id"] +
				`"},"message":{"conversation":"` + p["text"] + `"}},"date_time":"2025-11-21T21:25:03.` + p["ts"] + `Z","apikey":"k"}`
		},
		meaning: []string{"id", "text"}, unstable: []string{"ws", "ts", "direct"},
	}} {
		runProperty(t, c)
	}
}
