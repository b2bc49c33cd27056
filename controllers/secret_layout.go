package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// secretLayout is what, besides the credentials, decides a Secret's data: its
// type, its data keys and, for a Secret rendered from spec.secret.template or
// spec.secret.formats, the templates and what they read besides the
// credentials. The credentials-hash annotation fingerprints the layout with the
// credentials, so that a Secret of another layout is rendered again.
type secretLayout struct {
	secretType       corev1.SecretType
	sidKey, tokenKey string
	// urlKey, when set, holds tokenURL: the token endpoint of an OAuth2
	// backend, beside the client ID and secret.
	urlKey, tokenURL string
	// keys are the data keys the Secret holds, sorted.
	keys []string
	// digest is empty for the default layout (two keys), so that a Secret
	// written before templates existed keeps its fingerprint.
	digest string

	templates map[string]string
	formats   []tokensv1alpha1.SecretFormat
	// keepSID and keepToken write the default keys beside rendered ones.
	keepSID, keepToken bool
	// input is what templates see, but the credentials.
	input templateInput
}

// backendEndpoints are what a Secret may show of its TokenBackend: its URL, and
// the token endpoint of an OAuth2 backend (empty for others).
type backendEndpoints struct {
	url, tokenURL string
}

// endpointsOf reads them from a TokenBackend (nil: none yet).
func endpointsOf(tb *tokensv1alpha1.TokenBackend) backendEndpoints {
	if tb == nil {
		return backendEndpoints{}
	}
	e := backendEndpoints{url: tb.Spec.URL}
	if tb.Spec.Hydra != nil {
		e.tokenURL = tb.Spec.Hydra.TokenURL
	}
	return e
}

// layoutOf is the layout the ApiToken's spec asks for with its TokenBackend's
// endpoints, which templates may read. An OAuth2 backend's credentials are a
// client ID and secret: their keys default to clientId and clientSecret, and an
// Opaque Secret holds the token endpoint too (tokenUrl).
func layoutOf(at *tokensv1alpha1.ApiToken, ends backendEndpoints) secretLayout {
	spec := &at.Spec.Secret
	oauth2 := ends.tokenURL != ""
	l := secretLayout{secretType: secretType(at), formats: spec.Formats, keepSID: true, keepToken: true}
	l.sidKey, l.tokenKey = spec.KeyNamesFor(oauth2)
	if oauth2 && l.secretType == corev1.SecretTypeOpaque {
		l.urlKey, l.tokenURL = tokensv1alpha1.DefaultTokenURLKey, ends.tokenURL
	}
	if spec.Template != nil && len(spec.Template.Data) > 0 {
		l.templates = spec.Template.Data
		l.keepSID = slices.Contains(spec.Template.Keep, tokensv1alpha1.KeepAccountSID)
		l.keepToken = slices.Contains(spec.Template.Keep, tokensv1alpha1.KeepAuthToken)
		if l.secretType == corev1.SecretTypeBasicAuth { // the type requires both
			l.keepSID, l.keepToken = true, true
		}
	}
	keys := slices.Collect(maps.Keys(l.templates))
	if l.keepSID {
		keys = append(keys, l.sidKey)
	}
	if l.keepToken {
		keys = append(keys, l.tokenKey)
	}
	for _, f := range l.formats {
		keys = append(keys, f.Key())
	}
	if l.urlKey != "" && l.templates[l.urlKey] == "" {
		keys = append(keys, l.urlKey)
	}
	// Not compacted: two names for one key (which admission refuses) never
	// match the Secret's single key, so such a Secret is never taken as held.
	slices.Sort(keys)
	l.keys = keys
	if !l.rendered() {
		return l
	}
	l.input = templateInput{
		Scopes: backend.NormalizeSet(at.Spec.Scopes), APIVersion: int(at.Status.APIVersion), BackendURL: ends.url, TokenURL: ends.tokenURL,
	}
	l.digest = layoutDigest(l)
	return l
}

// rendered reports a layout rendered from templates or formats.
func (l secretLayout) rendered() bool { return len(l.templates) > 0 || len(l.formats) > 0 }

// layoutDigest fingerprints a rendered layout: everything rendering reads but
// the credentials.
func layoutDigest(l secretLayout) string {
	doc, _ := json.Marshal(struct {
		Type            corev1.SecretType
		SIDKey, Token   string
		Keys            []string
		Templates       map[string]string
		Formats         []tokensv1alpha1.SecretFormat
		KeepSID, KeepTk bool
		Input           templateInput
	}{l.secretType, l.sidKey, l.tokenKey, l.keys, l.templates, l.formats, l.keepSID, l.keepToken, l.input})
	return shortHash(string(doc))
}

// credentialsHash fingerprints what a Secret is meant to hold: the SID, the
// generation and the layout. It holds nothing secret. The default layout keeps
// the form it has always had (type and key names).
func credentialsHash(sid string, generation int64, l secretLayout) string {
	parts := []string{sid, strconv.FormatInt(generation, 10), string(l.secretType), l.sidKey, l.tokenKey}
	if l.urlKey != "" {
		parts = append(parts, l.urlKey, l.tokenURL)
	}
	if l.digest != "" {
		parts = append(parts, strings.Join(l.keys, ","), l.digest)
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:16])
}

// secretData is the data of a Secret of this layout with these credentials. A
// template that fails is a TemplateError stall whose message holds no data.
func (l secretLayout) secretData(creds backend.Credentials) (map[string][]byte, error) {
	data := map[string][]byte{}
	if l.rendered() {
		in := l.input
		in.AccountSID, in.AuthToken = creds.AccountSID, creds.AuthToken.Reveal()
		rendered, err := renderTemplates(l.templates, l.formats, in)
		if err != nil {
			return nil, stalled(tokensv1alpha1.ReasonTemplateError, "%s", err.Error())
		}
		data = rendered
	}
	if l.keepSID {
		data[l.sidKey] = []byte(creds.AccountSID)
	}
	if l.keepToken {
		data[l.tokenKey] = []byte(creds.AuthToken.Reveal())
	}
	if l.urlKey != "" && l.templates[l.urlKey] == "" {
		data[l.urlKey] = []byte(l.tokenURL)
	}
	return data, nil
}

// checkLayout checks the templates before anything is made in the backend: a
// template that fails with placeholder credentials fails with any.
func checkLayout(l secretLayout) error {
	if l.sidKey == l.tokenKey || (l.urlKey != "" && (l.sidKey == l.urlKey || l.tokenKey == l.urlKey)) {
		// Admission checks the names against the Token Service's defaults; an
		// OAuth2 backend's defaults (clientId, clientSecret, tokenUrl) only here.
		return stalled(tokensv1alpha1.ReasonSecretRejected, "spec.secret: the keys of the SID (%s), the secret (%s) and the token URL (%s) must differ", l.sidKey, l.tokenKey, l.urlKey)
	}
	if !l.rendered() {
		return nil
	}
	if _, err := renderTemplates(l.templates, l.formats, withPlaceholders(l.input)); err != nil {
		return stalled(tokensv1alpha1.ReasonTemplateError, "%s", err.Error())
	}
	return nil
}

// The source Secret of a rendered layout. A rendered Secret need not hold the
// auth token as it is (a connection string, a .env file), and the operator keeps
// no credentials at rest: so that a change of template, scopes or backend URL
// renders the Secret again without a backend call, the credentials as the
// backend issued them are kept in a second Secret the ApiToken controls, in its
// namespace, of a type of its own that no workload is meant to mount. It is
// written before the rendered Secret, and deleted with the ApiToken.
const sourceSecretType corev1.SecretType = "tokens.apitoken.dev/credentials-source"

// sourceSecretName is derived from the ApiToken's UID: it never moves with
// spec.secret.name, and two ApiTokens never share one.
func sourceSecretName(at *tokensv1alpha1.ApiToken) string {
	return "apitoken-source-" + shortHash(string(at.UID))
}

// sourceLayout is the layout of a source Secret: the two default keys.
var sourceLayout = secretLayout{
	secretType: sourceSecretType, sidKey: tokensv1alpha1.DefaultAccountSIDKey, tokenKey: tokensv1alpha1.DefaultAuthTokenKey,
	keys: []string{tokensv1alpha1.DefaultAccountSIDKey, tokensv1alpha1.DefaultAuthTokenKey}, keepSID: true, keepToken: true,
}

// sourceCredentials reads the credentials of sid, at generation or a later one,
// from the source Secret; ok is false when it does not hold them (none yet,
// another token or an older generation, or edited by someone else). A later
// generation is one the operator wrote there before a status write that
// failed: the newest credentials the backend issued.
func (r *ApiTokenReconciler) sourceCredentials(ctx context.Context, at *tokensv1alpha1.ApiToken, sid string, generation int64) (backend.Credentials, bool, error) {
	name := sourceSecretName(at)
	head, err := r.cachedSecret(ctx, at, name)
	if err != nil || head == nil {
		return backend.Credentials{}, false, ignoreConflict(err)
	}
	held := deliveryIn(head)
	if !held.holds(sourceLayout, sid) || held.generation < generation {
		return backend.Credentials{}, false, nil
	}
	generation = held.generation
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: at.Namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return backend.Credentials{}, false, nil
		}
		return backend.Credentials{}, false, fmt.Errorf("get Secret %s: %w", name, err)
	}
	if !isControlledBy(s, at) || string(s.Data[sourceLayout.sidKey]) != sid {
		return backend.Credentials{}, false, nil
	}
	return backend.Credentials{AccountSID: sid, AuthToken: backend.AuthToken(s.Data[sourceLayout.tokenKey]), Generation: generation}, true, nil
}

// holdsSource reports whether a source Secret's metadata says it holds, as the
// operator wrote them, the credentials of sid at generation.
func holdsSource(head *metav1.PartialObjectMetadata, sid string, generation int64) bool {
	d := deliveryIn(head)
	return d.holds(sourceLayout, sid) && d.generation == generation
}

// ignoreConflict drops a conflict (a foreign Secret under the source name: it is
// never read, and writing the source reports it).
func ignoreConflict(err error) error {
	if errors.As(err, new(secretConflictError)) {
		return nil
	}
	return err
}

// writeSource keeps the credentials in the source Secret, before the rendered
// Secret is written. writtenAheadFor, when set, is the key of the change whose
// secret written ahead these credentials are (write_ahead.go): recorded on the
// source in the same write, so that a replay of that change finds the secret
// once the pending Secret is gone.
func (r *ApiTokenReconciler) writeSource(ctx context.Context, at *tokensv1alpha1.ApiToken, creds backend.Credentials, writtenAheadFor string) error {
	name := sourceSecretName(at)
	existing, err := r.cachedSecret(ctx, at, name)
	if err != nil {
		return err
	}
	if holdsSource(existing, creds.AccountSID, creds.Generation) &&
		(writtenAheadFor == "" || existing.Annotations[writtenAheadForAnnotation] == writtenAheadFor) {
		return nil
	}
	desired := secretOf(at, name, sourceLayout, creds.AccountSID, creds.Generation)
	if writtenAheadFor != "" {
		desired.Annotations[writtenAheadForAnnotation] = writtenAheadFor
	}
	desired.Data, _ = sourceLayout.secretData(creds)
	if err := controllerutil.SetControllerReference(at, desired, r.Scheme); err != nil {
		return fmt.Errorf("own Secret %s: %w", name, err)
	}
	return r.writeSecret(ctx, at, existing, desired)
}

// deleteSource deletes the ApiToken's source Secret and pending Secret, where
// they exist (the cache says so at no cost). Neither is ever orphaned: they are
// of no use without the ApiToken.
func (r *ApiTokenReconciler) deleteSource(ctx context.Context, at *tokensv1alpha1.ApiToken) error {
	for _, name := range []string{sourceSecretName(at), pendingSecretName(at)} {
		head, err := r.cachedSecret(ctx, at, name)
		if err = ignoreConflict(err); err != nil {
			return err
		}
		if head == nil {
			continue
		}
		if err := r.deleteOwnSecret(ctx, at, name); err != nil {
			return err
		}
	}
	return nil
}
