package worker

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/wagate/wagate/messages"
)

// ForwardFormat is the body format of Forward's requests.
type ForwardFormat string

// The formats of Forward.
const (
	// FormatEvent sends wagate's event JSON, as messages.Event.Encode writes
	// it: for an application written for wagate.
	FormatEvent ForwardFormat = "event"
	// FormatProvider sends each event in its provider's own webhook format,
	// one item per request, signed as the provider signs: for an application
	// written for the provider's webhooks, which then works unchanged behind
	// wagate.
	//
	// Cloud API: a complete, minimal webhook envelope around the one item
	// (Meta, "Webhooks reference: messages"): "object", the entry's "id" and
	// "time" (when the item's entry had them), one change with its "field"
	// and a "value" holding "messaging_product", "metadata", the item's
	// matching contact (when it had one) and the item alone in the array it
	// came in ("messages", "statuses", "calls", "errors", "message_echoes",
	// or a "history" thread with its metadata and id; see messages.Frame).
	// A change of any other field is the whole change as received. Every part is
	// copied as received and joined by byte concatenation: the item's bytes
	// are exactly those the provider sent. An item wagate did not recognise
	// is placed where it was found (see messages.Parse).
	//
	// Gateways (WASenderApi, WAHA, Evolution API and any provider whose
	// parser keeps a messages.Frame body): the body as the provider sent it; when it held
	// several items of one array, that array holds this item alone. An
	// unknown member of a gateway's envelope reaches the application inside
	// the body of the other events of its webhook and sends nothing of its own.
	FormatProvider ForwardFormat = "provider"
)

// SignFunc sets on h the headers that authenticate body as provider's webhook
// under secret, as the provider sets them; ingest.SignRequest is one. It
// returns an error for a provider it does not know.
type SignFunc func(h http.Header, provider string, body []byte, secret string) error

// errNoFrame is returned for a gateway event whose parser kept no body
// around its item (see messages.Frame).
var errNoFrame = errors.New("the event holds no provider body around its item")

// providerBodies write the body of an event in its provider's own format, by
// provider; a provider not listed is a gateway, written by gatewayBody. A
// nil body with a nil error means that nothing is to be sent.
var providerBodies = map[string]func(ev messages.Event) ([]byte, error){
	messages.ProviderCloud: cloudBody,
}

// body returns the request body of ev in f's format; nil when nothing is to
// be sent.
func (f *Forward) body(ev messages.Event) ([]byte, error) {
	switch f.Format {
	case "", FormatEvent:
		return ev.Encode()
	case FormatProvider:
		write, ok := providerBodies[ev.Provider]
		if !ok {
			write = gatewayBody
		}
		body, err := write(ev)
		if err != nil {
			return nil, fmt.Errorf("%s event %s in the provider's format: %w", ev.Provider, ev.Key, err)
		}
		return body, nil
	}
	return nil, fmt.Errorf("unknown format %q", f.Format)
}

// sign sets the provider's authentication headers for body in
// FormatProvider: under f.Secrets[ev.Provider], with f.Sign. Nothing is set
// in FormatEvent, nor when the provider has no secret.
func (f *Forward) sign(h http.Header, ev messages.Event, body []byte) error {
	if f.Format != FormatProvider {
		return nil
	}
	secret := f.Secrets[ev.Provider]
	if secret == "" {
		return nil
	}
	if f.Sign == nil {
		return errors.New("no Sign function to sign the provider's format")
	}
	return f.Sign(h, ev.Provider, body, secret)
}

// gatewayBody writes a gateway event as its body: Before + Item + After.
func gatewayBody(ev messages.Event) ([]byte, error) {
	fr := ev.Context.Frame
	if fr.Covered {
		return nil, nil
	}
	if !fr.Body {
		return nil, errNoFrame
	}
	body := make([]byte, 0, len(fr.Before)+len(ev.Item)+len(fr.After))
	body = append(body, fr.Before...)
	body = append(body, ev.Item...)
	return append(body, fr.After...), nil
}
