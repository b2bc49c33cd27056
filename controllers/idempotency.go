package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// This file builds every idempotency key the operator sends to a backend. The
// keys are a contract stored in the backend (it replays a repeated call by its
// key for a day): changing how one is built makes a pass repeated across an
// upgrade create or reset again. Each names the ApiToken's UID and the one change
// it stands for, so that a repeat after a crash or a lost response replays the
// same call and a new change never does.

// createKey is the idempotency key of the create call. A fresh ApiToken's key is
// derived from its UID alone, so that a repeat after a crash or a lost response
// replays the first create. Creates that follow a lookup by external id (an
// earlier pass ran) must not replay a token that has since been deleted: when the
// backend token was deleted behind the operator's back, the key names the lost
// token; otherwise it names the ApiToken version that the pass read, which changes
// with every status write, so only a pass that recorded nothing repeats it.
func createKey(at *tokensv1alpha1.ApiToken, lostSID string, afterLookup bool) string {
	switch {
	case lostSID != "":
		return "create/" + string(at.UID) + "/after/" + lostSID
	case afterLookup:
		return "create/" + string(at.UID) + "/rv/" + at.ResourceVersion
	}
	return "create/" + string(at.UID)
}

// resetKey is the idempotency key of the reset for one nonce: the same nonce never
// resets twice, even across crashes.
func resetKey(at *tokensv1alpha1.ApiToken, nonce string) string {
	return "reset/" + string(at.UID) + "/" + shortHash(nonce)
}

// rotateKey is the idempotency key of the rotation asked for by one rotate nonce.
func rotateKey(at *tokensv1alpha1.ApiToken, nonce string) string {
	return "rotate/" + string(at.UID) + "/nonce/" + shortHash(nonce)
}

// scheduledRotationKey is the idempotency key of the scheduled rotation due at
// due: one per period.
func scheduledRotationKey(at *tokensv1alpha1.ApiToken, due time.Time) string {
	return "rotate/" + string(at.UID) + "/at/" + strconv.FormatInt(due.Unix(), 10)
}

// adoptKey is the key of the secret set when an ApiToken adopts a token of a
// backend that never returns secrets: one per ApiToken.
func adoptKey(at *tokensv1alpha1.ApiToken) string {
	return "adopt/" + string(at.UID)
}

// regenerateKey is the idempotency key of a new secret set because the operator
// lost its copy of one the backend never returns (write_ahead.go): one per
// token and generation.
func regenerateKey(at *tokensv1alpha1.ApiToken, sid string, generation int64) string {
	return "regenerate/" + string(at.UID) + "/" + sid + "/" + strconv.FormatInt(generation, 10)
}

// shortHash keeps keys (and recorded nonces) short whatever the nonce: the first
// 16 bytes of its SHA-256, in hex.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// For a backend that lets the caller choose each token's SID (a type without
// ServerChosenSID), the SID is the idempotency of the create: the ApiToken's UID
// for its first token, "<uid>-<n>" for each later one (a rotation's successor, a
// token made again after its predecessor was lost), n one more than any n of
// the tokens the status names. A create repeated after a crash chooses the same
// SID, and lands on the token it made.

// firstSID is the SID of the ApiToken's first token, or, after lostSID was lost,
// of the token that replaces it.
func firstSID(at *tokensv1alpha1.ApiToken, lostSID string) string {
	if lostSID == "" && at.Status.AccountSID == "" {
		return string(at.UID)
	}
	return successorSID(at, lostSID)
}

// successorSID is the SID of the next token of the ApiToken.
func successorSID(at *tokensv1alpha1.ApiToken, also ...string) string {
	prefix := string(at.UID)
	highest := 0
	sids := append([]string{at.Status.AccountSID}, also...)
	for _, t := range at.Status.RetiringTokens {
		sids = append(sids, t.AccountSID)
	}
	for _, sid := range sids {
		if n, ok := sidNumber(prefix, sid); ok && n > highest {
			highest = n
		}
	}
	return prefix + "-" + strconv.Itoa(highest+1)
}

// sidNumber reads n from "<prefix>-<n>"; the prefix alone is 0.
func sidNumber(prefix, sid string) (int, bool) {
	if sid == prefix {
		return 0, true
	}
	rest, ok := strings.CutPrefix(sid, prefix+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0
}
