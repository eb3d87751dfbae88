package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

// eventRef names one event by its provider id, for the commands that take a
// wamid instead of a key: the parts of its identity besides the id (see
// messages.Parse for the identities).
type eventRef struct {
	kind        string // message, status or call
	account     string // phone_number_id
	second      string // status value (status) or call event or status (call)
	field       string // the change's field; "" for messages (calls for a call)
	participant string // the group participant of a status; "" for none
}

// addFlags adds --account, --kind, --status, --field and --participant to
// cmd.
func (r *eventRef) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.account, "account", "", "phone_number_id the wamid belongs to (needed with a wamid)")
	cmd.Flags().StringVar(&r.kind, "kind", string(messages.KindMessage), "event kind of a wamid: message, status or call")
	cmd.Flags().StringVar(&r.second, "status", "", "with --kind status: the status (sent, delivered, read, played, failed); with --kind call: the call event (connect, terminate) or call status (RINGING, ACCEPTED, REJECTED)")
	cmd.Flags().StringVar(&r.field, "field", "", "the webhook field of a message: messages (default), smb_message_echoes or history")
	cmd.Flags().StringVar(&r.participant, "participant", "", "with --kind status: the group participant (recipient_participant_id) of a group message's status")
}

// resolveKey returns the dedupe key that arg names: arg itself when it is a
// key ("wa:" and 22 characters), else the key of the Cloud API event whose
// id (wamid or call id) is arg, and the identity it was computed from. It
// returns an error saying which flag is missing or wrong.
func resolveKey(arg string, r eventRef) (key, identity string, err error) {
	arg = strings.TrimSpace(arg)
	if strings.HasPrefix(arg, messages.KeyPrefix) {
		if len(arg) != messages.KeyLen {
			return "", "", fmt.Errorf("%q is not a dedupe key: a key is %q and 22 base64url characters", arg, messages.KeyPrefix)
		}
		return arg, "", nil
	}
	if arg == "" {
		return "", "", fmt.Errorf("empty key or wamid")
	}
	if r.account == "" {
		return "", "", fmt.Errorf("%q is not a key; a wamid needs --account <phone_number_id>", arg)
	}
	if r.participant != "" && messages.Kind(r.kind) != messages.KindStatus {
		return "", "", fmt.Errorf("--participant applies to --kind status, not %s", r.kind)
	}
	ref := messages.CloudRef{Kind: messages.Kind(r.kind), Account: r.account, Field: r.field, ID: arg, Participant: r.participant}
	switch ref.Kind {
	case messages.KindMessage:
		if r.second != "" {
			return "", "", fmt.Errorf("--status applies to --kind status or call, not message")
		}
	case messages.KindStatus, messages.KindCall:
		if r.second == "" {
			return "", "", fmt.Errorf("--kind %s needs --status (the status value or the call event): each is an event of its own", r.kind)
		}
		ref.Status = r.second
		if ref.Kind == messages.KindCall && (r.second == "connect" || r.second == "terminate") {
			ref.Status, ref.CallEvent = "", r.second
		}
	default:
		return "", "", fmt.Errorf("--kind %q: want message, status or call (other kinds have no id; use their key)", r.kind)
	}
	identity = ref.Identity()
	return messages.KeyOf(identity), identity, nil
}

func newKeyCmd() *cobra.Command {
	var ref eventRef
	cmd := &cobra.Command{
		Use:   "key <key | wamid>",
		Short: "Show an event's dedupe state (absent, pending, accepted, done), fencing number and lock",
		Long: `Show an event's dedupe state in the configured store (WAGATE_DEDUPE_BACKEND),
and which store that is. It only reads: it never creates or updates a bucket.
Against "wagate dev", run it in dev's folder (or with its WAGATE_DATA_DIR): it
follows the record dev keeps there (.wagate/dev.json) to dev's NATS server and
store, and fails naming the record when that dev has stopped. With
WAGATE_NATS_URL set no record is read.

The argument is a dedupe key ("wa:" and 22 characters, as in the logs, the
Idempotency-Key header and "wagate dlq list") or a Cloud API id. An id needs
--account (the phone_number_id); a message is --kind message (the default;
--field smb_message_echoes or history for an echo or a history message), a
status --kind status --status read (each status value is its own event; add
--participant for a group member's status), a call --kind call --status
connect (a call status: --status RINGING). A reaction, whose identity holds
its emoji, and events of other providers are named by their key.

States: absent (never seen, or forgotten after the dedupe horizon), pending
(claimed by an ingress, publish in flight or died), accepted (stored in
JetStream, not processed yet), done (processed; never run again unless
replayed with --force). "fence" is the last fencing number issued, "locked"
whether a run holds the lock now.`,
		Example: `  wagate key wa:Vb3yX1p0m2Qx9f0Y4nJr7A
  wagate key wamid.HBgLMTU1NTAwMDAwMDEVAgASGBQzQUI= --account 106540352242922
  wagate key wamid.HBgLMTU1NTAwMDAwMDEVAgASGBQzQUI= --account 106540352242922 --kind status --status read`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, identity, err := resolveKey(args[0], ref)
			if err != nil {
				return fmt.Errorf("key: %w", err)
			}
			o, err := openOps(cmd.Context(), "wagate-key", true)
			if err != nil {
				return err
			}
			defer o.close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			fmt.Fprintf(cmd.OutOrStdout(), "store    %s\n", o.storeName())
			rec, err := o.store.Lookup(ctx, key)
			if err != nil {
				return fmt.Errorf("key: %w", err)
			}
			printRecord(cmd.OutOrStdout(), key, identity, rec)
			return nil
		},
	}
	ref.addFlags(cmd)
	return cmd
}

// printRecord writes what the store knows of key.
func printRecord(w io.Writer, key, identity string, rec dedupe.Record) {
	if identity != "" {
		fmt.Fprintf(w, "identity %s\n", identity)
	}
	fmt.Fprintf(w, "key      %s\nstate    %s\nfence    %d\nlocked   %t\nttl      %s\nraw      %q\n",
		key, rec.State, rec.Fence, rec.Locked, rec.TTL.Round(time.Second), rec.Raw)
}
