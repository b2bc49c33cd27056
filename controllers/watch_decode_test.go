package controllers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	jsonserializer "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	restclientwatch "k8s.io/client-go/rest/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

func TestSplitWatchEvent(t *testing.T) {
	for _, tc := range []struct {
		name, frame string
		wantType    watch.EventType
		wantObject  string // "" when the frame must take client-go's path
	}{
		{"added", `{"type":"ADDED","object":{"apiVersion":"v","kind":"K"}}`, watch.Added, `{"apiVersion":"v","kind":"K"}`},
		{"modified, nested braces", `{"type":"MODIFIED","object":{"a":{"b":"}"}}}`, watch.Modified, `{"a":{"b":"}"}}`},
		{"deleted", `{"type":"DELETED","object":{}}`, watch.Deleted, `{}`},
		{"a bookmark goes the standard way", `{"type":"BOOKMARK","object":{}}`, "", ""},
		{"an error goes the standard way", `{"type":"ERROR","object":{"kind":"Status"}}`, "", ""},
		{"another member order", `{"object":{},"type":"ADDED"}`, "", ""},
		{"spaces", `{ "type":"ADDED","object":{}}`, "", ""},
		{"an escaped type", `{"type":"ADD\"ED","object":{}}`, "", ""},
		{"an object that is not an object", `{"type":"ADDED","object":null}`, "", ""},
		{"cut short", `{"type":"ADDED","object":`, "", ""},
		{"no type", `{"type":`, "", ""},
		{"empty", ``, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eventType, object, ok := splitWatchEvent([]byte(tc.frame))
			if ok != (tc.wantObject != "") {
				t.Fatalf("splitWatchEvent(%s) ok = %v, want %v", tc.frame, ok, tc.wantObject != "")
			}
			if ok && (eventType != tc.wantType || string(object) != tc.wantObject) {
				t.Errorf("splitWatchEvent(%s) = %s %s, want %s %s", tc.frame, eventType, object, tc.wantType, tc.wantObject)
			}
		})
	}
}

// The fast watch decodes what a real API server sends exactly as client-go
// does, and takes its fast path for every ApiToken event: compared event by
// event with a watch of the test's client over a token the operator converges
// (created, finalizer, status), changes and deletes, with text that JSON
// escapes in its spec.
func TestFastWatchDecodesApiTokensAsClientGoDoes(t *testing.T) {
	ns := newNamespace(t, nil)
	counts := &fastWatchCounts{}
	httpClient, err := rest.HTTPClientFor(controlPlane.Config)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := newFastApiTokenWatch(controlPlane.Config, httpClient, testScope, counts)
	if err != nil {
		t.Fatal(err)
	}
	inNamespace := fields.OneTermEqualSelector("metadata.namespace", ns).String()
	fastEvents, err := fast.watch(t.Context(), metav1.ListOptions{FieldSelector: inNamespace})
	if err != nil {
		t.Fatal(err)
	}
	defer fastEvents.Stop()
	standardEvents, err := k8s.Watch(t.Context(), &tokensv1alpha1.ApiTokenList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer standardEvents.Stop()
	operatorDecodesBefore := apiTokenWatchDecodes.fast.Load()

	at := newApiToken(ns, "watched")
	at.Spec.Description = "quotes \" and \\ backslashes, a line\nbreak, <html> & unicode: é 🔑"
	at.Annotations = map[string]string{"note": `{"looks":"like json"}`}
	createReady(t, at)
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "changed" })
	if err := k8s.Delete(t.Context(), at); err != nil {
		t.Fatal(err)
	}

	// Until the deletion: the finalizer goes, then the ApiToken.
	var standard []watch.Event
	for deleted := false; !deleted; {
		select {
		case e := <-standardEvents.ResultChan():
			if e.Type != watch.Bookmark {
				standard = append(standard, e)
			}
			deleted = e.Type == watch.Deleted
		case <-time.After(wait):
			t.Fatalf("no deletion seen by the standard watch after %d events", len(standard))
		}
	}
	bookmarks := 0
	for i, want := range standard {
		var got watch.Event
		for got.Type == "" || got.Type == watch.Bookmark {
			select {
			case got = <-fastEvents.ResultChan():
				if got.Type == watch.Bookmark {
					bookmarks++
				}
			case <-time.After(wait):
				t.Fatalf("event %d (%s) not seen by the fast watch", i, want.Type)
			}
		}
		// The fast decoder skips managedFields, which the cache drops anyway.
		if at, ok := want.Object.(*tokensv1alpha1.ApiToken); ok {
			at.ManagedFields = nil
		}
		if got.Type != want.Type || !reflect.DeepEqual(got.Object, want.Object) {
			t.Fatalf("event %d: fast watch decoded %s %+v, client-go %s %+v", i, got.Type, got.Object, want.Type, want.Object)
		}
	}
	if len(standard) < 4 {
		t.Errorf("%d events, want at least 4 (created, finalizer, status, deleted)", len(standard))
	}
	if got := counts.fast.Load(); got < int64(len(standard)) {
		t.Errorf("%d ApiTokens decoded the fast way of %d events", got, len(standard))
	}
	if got := counts.standardEnvelopes.Load(); got != int64(bookmarks) {
		t.Errorf("%d envelopes decoded client-go's way, want only the %d bookmarks", got, bookmarks)
	}
	if apiTokenWatchDecodes.fast.Load() == operatorDecodesBefore {
		t.Error("the operator's own ApiToken informer decoded no event the fast way")
	}
}

// BenchmarkApiTokenWatchDecode decodes a converged ApiToken's watch event, as
// the API server writes it, the way client-go does and the fast way.
func BenchmarkApiTokenWatchDecode(b *testing.B) {
	at := newApiToken("team-a", "reports")
	at.UID, at.ResourceVersion, at.Generation, at.Finalizers = "6f1c1f5e-4a8e-4d7e-9a55-3f1f0d6b2c11", "123456", 1, []string{tokensv1alpha1.Finalizer}
	at.ManagedFields = []metav1.ManagedFieldsEntry{
		{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "tokens.apitoken.dev/v1alpha1", FieldsType: "FieldsV1",
			FieldsV1: metav1.NewFieldsV1(`{"f:spec":{".":{},"f:backendRef":{},"f:name":{},"f:primaryContact":{},"f:scopes":{}}}`)},
		{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "tokens.apitoken.dev/v1alpha1", FieldsType: "FieldsV1", Subresource: "status",
			FieldsV1: metav1.NewFieldsV1(`{"f:status":{".":{},"f:accountSid":{},"f:conditions":{},"f:history":{},"f:secretName":{}}}`)},
	}
	setBenchStatus(at)
	object, err := runtime.DefaultUnstructuredConverter.ToUnstructured(at)
	if err != nil {
		b.Fatal(err)
	}
	object["apiVersion"], object["kind"] = tokensv1alpha1.GroupVersion.String(), "ApiToken"
	raw, err := json.Marshal(object) // sorted keys, as the API server writes a custom resource
	if err != nil {
		b.Fatal(err)
	}
	frame := append(append([]byte(`{"type":"MODIFIED","object":`), raw...), "}\n"...)
	standard := serializer.WithoutConversionCodecFactory{CodecFactory: serializer.NewCodecFactory(testScope)}
	for _, path := range []struct {
		name       string
		serializer runtime.NegotiatedSerializer
	}{
		{"client-go", standard},
		{"fast", fastWatchSerializer{NegotiatedSerializer: standard, counts: &fastWatchCounts{}}},
	} {
		b.Run(path.name, func(b *testing.B) {
			objects, events, framer, err := runtime.NewClientNegotiator(path.serializer, tokensv1alpha1.GroupVersion).StreamDecoder(runtime.ContentTypeJSON, nil)
			if err != nil {
				b.Fatal(err)
			}
			stream := bytes.Repeat(frame, b.N)
			decoder := restclientwatch.NewDecoder(streaming.NewDecoder(framer.NewFrameReader(io.NopCloser(bytes.NewReader(stream))), events), objects)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, obj, err := decoder.Decode(); err != nil || obj.(*tokensv1alpha1.ApiToken).Status.AccountSID == "" {
					b.Fatalf("decoded %v, %v", obj, err)
				}
			}
		})
	}
}

// setBenchStatus gives an ApiToken the status of a converged one.
func setBenchStatus(at *tokensv1alpha1.ApiToken) {
	now := metav1.Now()
	at.Status = tokensv1alpha1.ApiTokenStatus{ObservedGeneration: 1, AccountSID: "IRa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", SecretName: at.Name,
		BackendETag: `"7"`, APIVersion: 2, State: "Enabled", CredentialsIssuedAt: &now,
		History: []tokensv1alpha1.CredentialChange{{Type: tokensv1alpha1.CredentialsCreated, Time: now, AccountSID: "IRa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", Generation: 1}},
		Conditions: []metav1.Condition{
			{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1alpha1.ReasonReady, Message: "Token IRa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6 is Enabled; credentials are in Secret reports", LastTransitionTime: now, ObservedGeneration: 1},
			{Type: tokensv1alpha1.ConditionReconciling, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonReady, Message: "Up to date", LastTransitionTime: now, ObservedGeneration: 1},
			{Type: tokensv1alpha1.ConditionStalled, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonReady, Message: "Up to date", LastTransitionTime: now, ObservedGeneration: 1},
		}}
}

// The object framer splits a stream as client-go's JSON framer does, whatever
// the objects hold and however the bytes arrive, and hands a frame larger than
// the caller's buffer over in parts.
func TestObjectFramerSplitsAsClientGo(t *testing.T) {
	stream := `{"type":"ADDED","object":{"a":"}{]["}}` + "\n" +
		`  {"s":"quote \" and backslash \\","n":[1,{"x":[]}],"e":"\\\""}` + "\r\n\t" +
		`{"unicode":"é 🔑 \u007d","deep":{"a":{"b":{"c":[[[]]]}}}}` + "\n" +
		`{}` + `{"adjacent":true}` + "\n"
	read := func(t *testing.T, framer runtime.Framer, body io.Reader, bufSize int) []string {
		r := framer.NewFrameReader(io.NopCloser(body))
		var frames []string
		var frame []byte
		buf := make([]byte, bufSize)
		for {
			n, err := r.Read(buf)
			frame = append(frame, buf[:n]...)
			switch {
			case errors.Is(err, io.ErrShortBuffer):
				continue
			case errors.Is(err, io.EOF):
				return frames
			case err != nil:
				t.Fatalf("read: %v", err)
			}
			frames = append(frames, string(frame))
			frame = nil
		}
	}
	want := read(t, jsonserializer.Framer, strings.NewReader(stream), 1024)
	if len(want) != 5 {
		t.Fatalf("client-go's framer found %d frames, want 5: %q", len(want), want)
	}
	for _, tc := range []struct {
		name    string
		body    io.Reader
		bufSize int
	}{
		{"whole", strings.NewReader(stream), 1024},
		{"a byte at a time", iotest.OneByteReader(strings.NewReader(stream)), 1024},
		{"frames larger than the buffer", strings.NewReader(stream), 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := read(t, objectFramer{}, tc.body, tc.bufSize); !reflect.DeepEqual(got, want) {
				t.Errorf("frames\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestObjectFramerRefusesWhatIsNotAnObject(t *testing.T) {
	for _, tc := range []struct{ name, stream string }{
		{"a scalar", `42`},
		{"an array", `[{}]`},
		{"cut short", `{"a":"b"`},
		{"cut in a string", `{"a":"b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := objectFramer{}.NewFrameReader(io.NopCloser(strings.NewReader(tc.stream)))
			if _, err := r.Read(make([]byte, 64)); err == nil || errors.Is(err, io.ErrShortBuffer) {
				t.Errorf("Read(%s) = %v, want an error", tc.stream, err)
			}
		})
	}
}

func TestWithoutManagedFields(t *testing.T) {
	const entries = `[{"manager":"kubectl","fieldsV1":{"f:metadata":{"f:managedFields":{}}},"time":"2026-12-04T00:00:00Z"}]`
	for name, tc := range map[string]struct{ in, want string }{
		"between others": {`{"kind":"ApiToken","metadata":{"generation":1,"managedFields":` + entries + `,"name":"a"},"spec":{}}`,
			`{"kind":"ApiToken","metadata":{"generation":1,"name":"a"},"spec":{}}`},
		"first":      {`{"metadata":{"managedFields":` + entries + `,"name":"a"}}`, `{"metadata":{"name":"a"}}`},
		"last":       {`{"metadata":{"name":"a","managedFields":` + entries + `}}`, `{"metadata":{"name":"a"}}`},
		"alone":      {`{"metadata":{"managedFields":` + entries + `},"spec":{"x":1}}`, `{"metadata":{},"spec":{"x":1}}`},
		"none":       {`{"metadata":{"name":"a"},"spec":{"note":"\"managedFields\":[1]"}}`, `{"metadata":{"name":"a"},"spec":{"note":"\"managedFields\":[1]"}}`},
		"elsewhere":  {`{"metadata":{"name":"a"},"spec":{"managedFields":[1]}}`, `{"metadata":{"name":"a"},"spec":{"managedFields":[1]}}`},
		"not JSON":   {`{"metadata":{"managedFields":[`, `{"metadata":{"managedFields":[`},
		"whitespace": {`{ "metadata": {"managedFields": []} }`, `{ "metadata": {"managedFields": []} }`},
		// A trailing comma stays: what was not JSON does not become JSON.
		"trailing comma": {`{"metadata":{"managedFields":[1],}}`, `{"metadata":{,}}`},
	} {
		got := string(withoutManagedFields([]byte(tc.in)))
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, tc.want)
		}
		if !json.Valid([]byte(got)) && json.Valid([]byte(tc.in)) {
			t.Errorf("%s: not JSON any more: %s", name, got)
		}
	}
}
