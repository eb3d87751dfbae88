package messages_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// peerEvent is what one event of a peer body must be: its kind and, for an
// item with an id of its own, the parts of its identity. Parts are nil for
// events identified by a hash of their bytes (field, error, unknown, and
// fallback identities).
type peerEvent struct {
	kind  messages.Kind
	parts []string
}

const (
	kMessage = messages.KindMessage
	kStatus  = messages.KindStatus
	kCall    = messages.KindCall
	kField   = messages.KindField
	kError   = messages.KindError
	kUnknown = messages.KindUnknown
)

// wsSession is the session part of a WASenderApi identity: "s-" and the
// first 8 bytes of the SHA-256 of sessionId, in hex.
func wsSession(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "s-" + hex.EncodeToString(sum[:8])
}

// peerCases are the events of every body in testdata/peers (bodies written by
// others: SDK fixtures, the providers' documentation, other projects; sources
// in testdata/peers/SOURCES.md). Several sources reuse one placeholder id
// for unrelated examples (wamid.xyzxyz, wamid.ID, two group participants
// written with one placeholder): identities shared across or inside such
// files are artefacts of the fixtures, not collisions.
var peerCases = map[string][]peerEvent{
	"cloud/WBAPI_Doc__account_alerts.json":                                  {{kField, nil}},
	"cloud/WBAPI_Doc__account_review_update.json":                           {{kField, nil}},
	"cloud/WBAPI_Doc__bsuid_status_delivered.json":                          {{kStatus, []string{"cloud", "status", "106540352242922", "messages", "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=", "delivered"}}},
	"cloud/WBAPI_Doc__bsuid_status_no_phone.json":                           {{kStatus, []string{"cloud", "status", "106540352242922", "messages", "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=", "delivered"}}},
	"cloud/WBAPI_Doc__business_capability_update.json":                      {{kField, nil}},
	"cloud/WBAPI_Doc__group_lifecycle_create.json":                          {{kField, nil}},
	"cloud/WBAPI_Doc__group_message_text.json":                              {{kMessage, []string{"cloud", "message", "106540352242922", "messages", "wamid.HASDI128HJOPUERIH82ahdasd09ASDHi5>"}}},
	"cloud/WBAPI_Doc__group_participants_add.json":                          {{kField, nil}},
	"cloud/WBAPI_Doc__group_status_read_participant.json":                   {{kStatus, []string{"cloud", "status", "BUSINESS_PHONE_NUMBER_ID", "messages", "WHATSAPP_MESSAGE_ID", "read", "GROUP_PARTICIPANT_PHONE_NUMBER"}}},
	"cloud/WBAPI_Doc__group_status_suspend.json":                            {{kField, nil}},
	"cloud/WBAPI_Doc__group_status_update.2.json":                           {{kField, nil}},
	"cloud/WBAPI_Doc__group_statuses_delivered_two_participants.json":       {{kStatus, []string{"cloud", "status", "BUSINESS_PHONE_NUMBER_ID", "messages", "WHATSAPP_MESSAGE_ID", "delivered", "GROUP_PARTICIPANT_PHONE_NUMBER"}}, {kStatus, []string{"cloud", "status", "BUSINESS_PHONE_NUMBER_ID", "messages", "WHATSAPP_MESSAGE_ID", "delivered", "GROUP_PARTICIPANT_PHONE_NUMBER"}}},
	"cloud/WBAPI_Doc__history.sync_off_error.json":                          {{kMessage, []string{"cloud", "message", "106540352242922", "history", "wamid.QyNUEHBgLMTY0NjcwNDM1OTUVAgARGBI1Rj3NEYxMzAzMzQ5MkEA"}}},
	"cloud/WBAPI_Doc__history.threads.json":                                 {{kMessage, []string{"cloud", "message", "106540352242922", "history", "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBIyNDlBOEI5QUQ4NDc0N0FCNjMA"}}, {kMessage, []string{"cloud", "message", "106540352242922", "history", "wamid.QyNUEHBgLMTY0NjcwNDM1OTUVAgARGBI1Rj3NEYxMzAzMzQ5MkEA"}}, {kMessage, []string{"cloud", "message", "106540352242922", "history", "wamid.N0FCNjMAHBgLMTY0NjcwNDM1OTUVAgARGBIyNDlBOEI5QUQ4NDc0"}}, {kMessage, []string{"cloud", "message", "106540352242922", "history", "wamid.BIyNDlBOEI5N0FCNjMAHBgLMTY0NjcwNDM1OTUVAgARGQUQ4NDc0"}}},
	"cloud/WBAPI_Doc__message_template_components_update.json":              {{kField, nil}},
	"cloud/WBAPI_Doc__message_template_quality_update.json":                 {{kField, nil}},
	"cloud/WBAPI_Doc__partner_solutions.json":                               {{kField, nil}},
	"cloud/WBAPI_Doc__payment_configuration_update.json":                    {{kField, nil}},
	"cloud/WBAPI_Doc__phone_number_name_update.json":                        {{kField, nil}},
	"cloud/WBAPI_Doc__reaction_removed.json":                                {{kMessage, []string{"cloud", "message", "106540352242922", "messages", "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=", "reaction", ""}}},
	"cloud/WBAPI_Doc__security.json":                                        {{kField, nil}},
	"cloud/WBAPI_Doc__smb_app_state_sync.json":                              {{kField, nil}},
	"cloud/WBAPI_Doc__smb_message_echoes.json":                              {{kMessage, []string{"cloud", "message", "106540352242922", "smb_message_echoes", "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBIyNDlBOEI5QUQ4NDc0N0FCNjMA"}}},
	"cloud/WBAPI_Doc__status_failed_131049.json":                            {{kStatus, []string{"cloud", "status", "106540352242922", "messages", "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA", "failed"}}},
	"cloud/WBAPI_Doc__status_sent_pmp.json":                                 {{kStatus, []string{"cloud", "status", "106540352242922", "messages", "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=", "sent"}}},
	"cloud/WBAPI_Doc__system_user_changed_number.json":                      {{kMessage, []string{"cloud", "message", "106540352242922", "messages", "wamid.HBgLMTk4MzU1NTE5NzQVAgASGAoxMTgyMDg2MjY3AA=="}}},
	"cloud/WBAPI_Doc__template_category_update.1.json":                      {{kField, nil}},
	"cloud/WBAPI_Doc__template_category_update.2.json":                      {{kField, nil}},
	"cloud/WBAPI_Doc__unsupported.json":                                     {{kMessage, []string{"cloud", "message", "106540352242922", "messages", "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="}}},
	"cloud/WBAPI_Doc__user_preferences.json":                                {{kField, nil}},
	"cloud/WBAPI_Doc__value_errors_rate_limit.json":                         {{kError, nil}},
	"cloud/pywa__account_update.account_deleted.json":                       {{kField, nil}},
	"cloud/pywa__account_update.account_offboarded.json":                    {{kField, nil}},
	"cloud/pywa__account_update.account_violation.json":                     {{kField, nil}},
	"cloud/pywa__account_update.partner_added.json":                         {{kField, nil}},
	"cloud/pywa__account_update.partner_removed_wa_app_disconnection.json":  {{kField, nil}},
	"cloud/pywa__account_update.pricing_tiering_update.json":                {{kField, nil}},
	"cloud/pywa__call_connect.business_initiated.json":                      {{kCall, []string{"cloud", "call", "743897493242", "calls", "wacid.xxxx=", "event", "connect"}}},
	"cloud/pywa__call_connect.user_initiated.json":                          {{kCall, []string{"cloud", "call", "743897493242", "calls", "wacid.xxxx=", "event", "connect"}}},
	"cloud/pywa__call_permission_update.accept.json":                        {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.x"}}},
	"cloud/pywa__call_permission_update.reject.json":                        {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.x"}}},
	"cloud/pywa__call_status.call_status.json":                              {{kCall, []string{"cloud", "call", "5483758353", "calls", "wacid.ABGGFjFVU2AfAgo6V", "status", "RINGING"}}},
	"cloud/pywa__call_terminate.call_terminate.json":                        {{kCall, []string{"cloud", "call", "37489742", "calls", "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh", "event", "terminate"}}, {kError, nil}},
	"cloud/pywa__callback_button.button.json":                               {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz"}}},
	"cloud/pywa__callback_button.quick_reply_without_context.json":          {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xsidjx"}}},
	"cloud/pywa__callback_selection.description.json":                       {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.zyzxyz"}}},
	"cloud/pywa__deleted_message.revoke.json":                               {{kMessage, []string{"cloud", "message", "<BUSINESS_PHONE_NUMBER_ID>", "messages", "<WHATSAPP_MESSAGE_ID>"}}},
	"cloud/pywa__edited_message.image.json":                                 {{kMessage, []string{"cloud", "message", "106540352242922", "messages", "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="}}},
	"cloud/pywa__flow_completion.without_flow_token.json":                   {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.wegrchytvwcggt=="}}},
	"cloud/pywa__message.contacts.json":                                     {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz"}}},
	"cloud/pywa__message.current_location.json":                             {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz"}}},
	"cloud/pywa__message.forwarded_many_times.json":                         {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz"}}},
	"cloud/pywa__message.interactive_message_with_err.json":                 {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.wegrchytvwcggt="}}, {kError, nil}},
	"cloud/pywa__message.order.json":                                        {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz"}}},
	"cloud/pywa__message.reaction.json":                                     {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz", "reaction", "😮"}}},
	"cloud/pywa__message.referral.json":                                     {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.ID"}}},
	"cloud/pywa__message.text.json":                                         {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz"}}},
	"cloud/pywa__message.unreaction_empty.json":                             {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz", "reaction", ""}}},
	"cloud/pywa__message.unreaction_no_emoji.json":                          {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz", "reaction", ""}}},
	"cloud/pywa__message.unsupported.json":                                  {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz"}}},
	"cloud/pywa__message.voice.json":                                        {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz"}}},
	"cloud/pywa__message_status.delivered.json":                             {{kStatus, []string{"cloud", "status", "1122334455667", "messages", "wamid.xyzxyz", "delivered"}}},
	"cloud/pywa__message_status.failed.json":                                {{kStatus, []string{"cloud", "status", "1122334455667", "messages", "wamid.xyzxyz", "failed"}}},
	"cloud/pywa__message_status.group.json":                                 {{kStatus, []string{"cloud", "status", "<BUSINESS_PHONE_NUMBER_ID>", "messages", "<WHATSAPP_MESSAGE_ID>", "read", "<GROUP_PARTICIPANT_USER_PHONE_NUMBER>"}}},
	"cloud/pywa__message_status.played.json":                                {{kStatus, []string{"cloud", "status", "1122334455667", "messages", "wamid.xyzxyz", "played"}}},
	"cloud/pywa__message_status.read.json":                                  {{kStatus, []string{"cloud", "status", "1122334455667", "messages", "wamid.xyzxyz", "read"}}},
	"cloud/pywa__message_status.sent.json":                                  {{kStatus, []string{"cloud", "status", "1122334455667", "messages", "wamid.xyzxyz", "sent"}}},
	"cloud/pywa__message_status.with_tracker.json":                          {{kStatus, []string{"cloud", "status", "1122334455667", "messages", "wamid.xyzxyz", "sent"}}},
	"cloud/pywa__outgoing_message.delete.json":                              {{kMessage, []string{"cloud", "message", "1122334455667", "smb_message_echoes", "wamid.yyyyyy"}}},
	"cloud/pywa__outgoing_message.edit.json":                                {{kMessage, []string{"cloud", "message", "1122334455667", "smb_message_echoes", "wamid.yyyyyy"}}},
	"cloud/pywa__outgoing_message.text.json":                                {{kMessage, []string{"cloud", "message", "1122334455667", "smb_message_echoes", "<WHATSAPP_MESSAGE_ID>"}}},
	"cloud/pywa__system.identity_change.json":                               {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz"}}},
	"cloud/pywa__system.phone_number_change.json":                           {{kMessage, []string{"cloud", "message", "1122334455667", "messages", "wamid.xyzxyz=="}}},
	"cloud/pywa__template_category_update.marketing.json":                   {{kField, nil}},
	"cloud/pywa__template_components_update.element.json":                   {{kUnknown, nil}, {kField, nil}},
	"cloud/pywa__template_quality_update.yellow.json":                       {{kField, nil}},
	"cloud/pywa__template_status_update.approved.json":                      {{kField, nil}},
	"cloud/pywa__user_marketing_preferences.resume.json":                    {{kField, nil}},
	"cloud/pywa__user_marketing_preferences.signup.json":                    {{kField, nil}},
	"cloud/whatsapp-business-java-api__accountBanned.json":                  {{kField, nil}},
	"cloud/whatsapp-business-java-api__accountReview.json":                  {{kField, nil}},
	"cloud/whatsapp-business-java-api__mediaUploadError.json":               {{kStatus, []string{"cloud", "status", "409552778964973", "messages", "wamid.HBgNNTUyNzk5NzAUZBQTI3MzRGRDA3MjgzMDkzNhUCABEYEjNCR2OQA=", "failed"}}},
	"cloud/whatsapp-business-java-api__messageDeleted.json":                 {{kMessage, []string{"cloud", "message", "409552778964973", "messages", "wamid.nBgN6TUyN2k5NzAzM5kzNhUCABI8FDNFQjAxQkE5REI4NEUzQ5Y5QTNgAA=="}}},
	"cloud/whatsapp-business-java-api__phoneNumberNameUpdate.json":          {{kField, nil}},
	"cloud/whatsapp-business-java-api__templateSchedulingForDisabling.json": {{kField, nil}},
	"cloud/whatsapp-business-java-api__textMessage2.json":                   {{kMessage, []string{"cloud", "message", "409552778964973", "messages", "wamid.nBgN6TUyN2k5NzAzM5kzNhUCABI8FDNFQjAxQkE5REI4NEUzQ5Y5QTNgAA=="}}},
	"cloud/whatsapp-business-java-api__textMessageStatusRead.json":          {{kStatus, []string{"cloud", "status", "409552778964973", "messages", "wamid.nBgN6TUyN2k5NzAzM5kzNhUCABI8FDNFQjAxQkE5REI4NEUzQ5Y5QTNgAA==", "read"}}},
	"cloud/whatsapp-business-java-api__textMessageStatusSent.json":          {{kStatus, []string{"cloud", "status", "409552778964973", "messages", "wamid.nBgN6TUyN2k5NzAzM5kzNhUCABI8FDNFQjAxQkE5REI4NEUzQ5Y5QTNgAA==", "sent"}}},
	"cloud/whatsapp-cloud-api__bsuid_only_no_from.json":                     {{kMessage, []string{"cloud", "message", "PHONE_NUMBER_ID", "messages", "wamid.ID"}}},
	"cloud/whatsapp-cloud-api__notification_context_referral.json":          {{kMessage, []string{"cloud", "message", "PHONE_NUMBER_ID", "messages", "wamid.ID"}}},
	"cloud/whatsapp-cloud-api__removed_reaction.json":                       {{kMessage, []string{"cloud", "message", "PHONE_NUMBER_ID", "messages", "wamid.ID", "reaction", ""}}},
	"cloud/whatsapp-cloud-api__status_conversation_initiated.json":          {{kStatus, []string{"cloud", "status", "PHONE_NUMBER_ID", "messages", "wamid.ID", "read"}}},
	"cloud/whatsapp-cloud-api__status_with_errors.json":                     {{kStatus, []string{"cloud", "status", "102944729380254", "messages", "amid.ID", "failed"}}},
	"cloud/whatsapp-cloud-api__system.json":                                 {{kMessage, []string{"cloud", "message", "NEW_PHONE_NUMBER_ID", "messages", "wamid.ID"}}},
	"cloud/whatsapp-cloud-api__two_changes_one_entry.json":                  {{kMessage, []string{"cloud", "message", "PHONE_NUMBER_ID", "messages", "wamid.ID"}}, {kMessage, []string{"cloud", "message", "PHONE_NUMBER_ID", "messages", "wamid.ID"}}},
	"cloud/whatsapp-cloud-api__unknown_type.json":                           {{kMessage, []string{"cloud", "message", "PHONE_NUMBER_ID", "messages", "wamid.ID"}}},

	"wasender/wasenderapi-docs__call.json":                           {{kCall, []string{"wasender", "call", "default", "3EB025832E521B2F7E11", "offer"}}},
	"wasender/wasenderapi-docs__chats.update.json":                   {{kField, nil}},
	"wasender/wasenderapi-docs__chats.upsert.json":                   {{kField, nil}},
	"wasender/wasenderapi-docs__contacts.update.json":                {{kField, nil}},
	"wasender/wasenderapi-docs__contacts.upsert.json":                {{kField, nil}},
	"wasender/wasenderapi-docs__group-participants.update.json":      {{kField, nil}},
	"wasender/wasenderapi-docs__groups.update.json":                  {{kField, nil}},
	"wasender/wasenderapi-docs__groups.upsert.json":                  {{kField, nil}},
	"wasender/wasenderapi-docs__message-receipt.update.read.json":    {{kStatus, []string{"wasender", "status", wsSession("your_session_id_here"), "group_jid_here@g.us", "out", "message_id_here", "read", "1234567890"}}},
	"wasender/wasenderapi-docs__message-receipt.update.receipt.json": {{kStatus, []string{"wasender", "status", wsSession("your_session_id_here"), "group_jid_here@g.us", "out", "message_id_here", "delivered", "1234567890"}}},
	"wasender/wasenderapi-docs__message.sent.failed.json":            {{kStatus, nil}},
	"wasender/wasenderapi-docs__message.sent.success.json":           {{kMessage, []string{"wasender", "message", "default", "direct", "out", "message-id-456"}}},
	"wasender/wasenderapi-docs__messages-group.received.json":        {{kMessage, []string{"wasender", "message", "default", "123456789-987654321@g.us", "in", "message-id-group-456"}}},
	"wasender/wasenderapi-docs__messages-newsletter.received.json":   {{kMessage, []string{"wasender", "message", "default", "123456789-987654321@newsletter", "in", "message-id-newsletter-456"}}},
	"wasender/wasenderapi-docs__messages-personal.received.json":     {{kMessage, []string{"wasender", "message", "default", "direct", "in", "3EB0X123456789"}}},
	"wasender/wasenderapi-docs__messages.delete.json":                {{kStatus, []string{"wasender", "status", "default", "direct", "in", "message-id-789", "deleted"}}},
	"wasender/wasenderapi-docs__messages.reaction.json":              {{kMessage, []string{"wasender", "message", "default", "direct", "in", "message-id-123", "reaction", "message-id-123", "\U0001F44D"}}},
	"wasender/wasenderapi-docs__messages.received.json":              {{kMessage, []string{"wasender", "message", "default", "direct", "in", "3EB0X123456789"}}},
	"wasender/wasenderapi-docs__messages.update.json":                {{kStatus, []string{"wasender", "status", wsSession("your_api_key"), "direct", "in", "34874643876", "sent"}}},
	"wasender/wasenderapi-docs__messages.upsert.json":                {{kMessage, []string{"wasender", "message", "default", "direct", "in", "message-id-123"}}},
	"wasender/wasenderapi-docs__poll.results.json":                   {{kField, nil}},
	"wasender/wasenderapi-docs__qrcode.updated.json":                 {{kField, nil}},
	"wasender/wasenderapi-docs__session.status.json":                 {{kField, nil}},

	"waha/waha-docs__call.accepted.json":         {{kCall, []string{"waha", "call", "default", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "accepted"}}},
	"waha/waha-docs__call.received.json":         {{kCall, []string{"waha", "call", "default", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "received"}}},
	"waha/waha-docs__call.rejected.json":         {{kCall, []string{"waha", "call", "default", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "rejected"}}},
	"waha/waha-docs__chat.archive.json":          {{kField, nil}},
	"waha/waha-docs__engine.event.json":          {{kField, nil}},
	"waha/waha-docs__event.response.json":        {{kMessage, []string{"waha", "message", "default", "direct", "in", "58BBBBBBBBBBBBBBBBBBBBBBBB", "event.response"}}},
	"waha/waha-docs__group.v2.join.json":         {{kField, nil}},
	"waha/waha-docs__group.v2.participants.json": {{kField, nil}},
	"waha/waha-docs__group.v2.update.json":       {{kField, nil}},
	"waha/waha-docs__label.chat.deleted.json":    {{kField, nil}},
	"waha/waha-docs__label.upsert.json":          {{kField, nil}},
	"waha/waha-docs__message.ack.group.json":     {{kStatus, []string{"waha", "status", "default", "11111111111@g.us", "out", "4CC5EDD64BC22EBA6D639F2AF571346C", "read", "0"}}},
	"waha/waha-docs__message.ack.json":           {{kStatus, []string{"waha", "status", "default", "direct", "out", "4CC5EDD64BC22EBA6D639F2AF571346C", "read", "0"}}},
	"waha/waha-docs__message.edited.json":        {{kMessage, []string{"waha", "message", "default", "direct", "in", "BBBBBBBBBBBBBBBBBBBBB[", "message.edited", "AAAAAAAAAAAAAAAA"}}},
	"waha/waha-docs__message.json":               {{kMessage, []string{"waha", "message", "default", "direct", "out", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}},
	"waha/waha-docs__message.reaction.json":      {{kMessage, []string{"waha", "message", "default", "direct", "in", "11111111111111111111111111111111", "reaction", "11111111111111111111111111111111", "\U0001F64F"}}},
	"waha/waha-docs__message.revoked.json":       {{kStatus, []string{"waha", "status", "default", "direct", "in", "AAAAAAAAAAAAAAAA", "deleted"}}},
	"waha/waha-docs__message.waiting.json":       {{kMessage, []string{"waha", "message", "default", "direct", "out", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "message.waiting"}}},
	"waha/waha-docs__poll.vote.failed.json":      {{kMessage, []string{"waha", "message", "default", "direct", "in", "2E8C4CDA89EDE3BC0BC7F605364B8451", "poll.vote.failed", "BAE595F4E0A2042C"}}},
	"waha/waha-docs__poll.vote.json":             {{kMessage, []string{"waha", "message", "default", "direct", "in", "83ACBE602A05C79B234B54415E95EE8A", "poll.vote", "BAE5F2EF5C69001E"}}},
	"waha/waha-docs__presence.update.json":       {{kField, nil}},
	"waha/waha-docs__session.status.json":        {{kField, nil}},
	"waha/wawp-docs__group.v2.participants.json": {{kField, nil}},
	"waha/wawp-docs__message.edited.json":        {{kMessage, []string{"waha", "message", "default", "direct", "in", "...", "message.edited", ""}}},

	"evolution/hub-tedio-webhook__contacts.update.array.json":  {{kField, nil}},
	"evolution/hub-tedio-webhook__contacts.update.object.json": {{kField, nil}},
	"evolution/hub-tedio-webhook__contacts.upsert.json":        {{kField, nil}},
	"evolution/hub-tedio-webhook__messages.upsert.json":        {{kMessage, []string{"evolution", "message", "nome-da-instancia", "direct", "out", "3AE99D6A1DBF3F9A0578"}}},
}

// TestPeerCorpus parses every body of testdata/peers with its provider's
// parser and checks its events against peerCases: count, kinds and, for
// items with an id, the identity. A body without a case fails the test.
func TestPeerCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "peers", "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no peer bodies: %v", err)
	}
	received := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.ToSlash(strings.TrimPrefix(path, filepath.Join("testdata", "peers")+string(filepath.Separator)))
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			want, ok := peerCases[name]
			if !ok {
				t.Fatal("no case for this body")
			}
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			provider := strings.SplitN(name, "/", 2)[0]
			parse, ok := messages.Parser(provider)
			if !ok {
				t.Fatalf("no parser for %q", provider)
			}
			evs, err := parse(body, received)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			checkEvents(t, body, evs)
			if len(evs) != len(want) {
				for _, ev := range evs {
					t.Logf("got %s %s", ev.Kind, ev.Identity)
				}
				t.Fatalf("%d events, want %d", len(evs), len(want))
			}
			for i, w := range want {
				ev := evs[i]
				if ev.Kind != w.kind {
					t.Errorf("event %d: kind %q, want %q (%s)", i, ev.Kind, w.kind, ev.Identity)
				}
				if w.parts != nil && ev.Identity != messages.Identity(w.parts...) {
					t.Errorf("event %d: identity\n got %q\nwant %q", i, ev.Identity, messages.Identity(w.parts...))
				}
				if ev.Provider != provider {
					t.Errorf("event %d: provider %q", i, ev.Provider)
				}
				// Evolution API's instance key never reaches an event.
				if enc, _ := ev.Encode(); bytes.Contains(enc, []byte("sua-api-key")) {
					t.Errorf("event %d holds the instance apikey: %s", i, enc)
				}
			}
		})
	}
	for name := range peerCases {
		if !seen[name] {
			t.Errorf("case %q has no body", name)
		}
	}
}
