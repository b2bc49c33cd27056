package controllers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// The ApiToken watch is the operator's busiest input: every new token arrives
// three times (created, finalizer added, status written), each event a few
// kilobytes of JSON. client-go reads each event five times over: the framer
// finds its end (two encoding/json passes); the JSON serializer reads the
// envelope's apiVersion and kind with a full encoding/json pass, then decodes
// the envelope, copying the object's bytes out; it reads the object's
// apiVersion and kind with another full pass; and only then decodes the
// object. That was a fifth of the operator's CPU while tokens converge, and
// much of its garbage. BenchmarkApiTokenWatchDecode: about 70 µs and 7.4 KB
// per event that way, 15 µs and 4.2 KB this way.
//
// The API server writes both layers in one shape: the envelope
// (metav1.WatchEvent) as {"type":"…","object":…} in its field order, and a
// custom resource with its keys sorted, so apiVersion and kind come first. The
// fast watch reads the envelope and the kind from those first bytes and decodes
// the object once; objectFramer finds where each event ends in one light
// pass. Anything else (an error Status, a bookmark, a server or
// proxy that writes another order) takes client-go's own path.

// apiTokenJSONPrefix is how every ApiToken the API server writes begins.
var apiTokenJSONPrefix = []byte(`{"apiVersion":"` + tokensv1alpha1.GroupVersion.String() + `","kind":"ApiToken",`)

// watchEventTypes are the event types the fast path accepts; any other goes
// client-go's way, which names it in its error.
var watchEventTypes = map[string]watch.EventType{
	string(watch.Added): watch.Added, string(watch.Modified): watch.Modified, string(watch.Deleted): watch.Deleted,
}

// splitWatchEvent reads a watch event written by the API server as
// {"type":"ADDED","object":{…}}: its type and the object's bytes (a slice of
// frame, not a copy). ok is false for any other shape.
func splitWatchEvent(frame []byte) (eventType watch.EventType, object []byte, ok bool) {
	const typeKey, objectKey = `{"type":"`, `","object":`
	rest, found := bytes.CutPrefix(frame, []byte(typeKey))
	if !found {
		return "", nil, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return "", nil, false
	}
	eventType, known := watchEventTypes[string(rest[:end])]
	if !known {
		return "", nil, false
	}
	object, found = bytes.CutPrefix(rest[end:], []byte(objectKey))
	// WatchEvent has no member after the object: what is left is the object
	// and the envelope's closing brace (the framer has checked it is JSON).
	if !found || len(object) < 2 || object[0] != '{' || object[len(object)-1] != '}' {
		return "", nil, false
	}
	return eventType, object[:len(object)-1], true
}

// fastWatchCounts counts how the watch events were decoded: envelopes and
// objects by client-go's path (standard*), ApiTokens by the fast one. The
// tests read them to hold that a real API server's events take the fast path.
type fastWatchCounts struct{ fast, standardObjects, standardEnvelopes atomic.Int64 }

// apiTokenWatchDecodes are the counts of the operator's own ApiToken informer.
var apiTokenWatchDecodes fastWatchCounts

// watchEventDecoder decodes the envelopes of a watch: the streaming serializer
// of fastWatchSerializer.
type watchEventDecoder struct {
	runtime.Serializer // client-go's, for anything not in the API server's shape
	counts             *fastWatchCounts
}

// Decode fills into, a *metav1.WatchEvent, from a frame in the API server's
// shape without decoding the object: the watch decoder decodes the object's
// bytes before it reads the next frame, which is all the frame's buffer must
// outlive.
func (d watchEventDecoder) Decode(frame []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if event, isEvent := into.(*metav1.WatchEvent); isEvent {
		if eventType, object, ok := splitWatchEvent(frame); ok {
			event.Type, event.Object = string(eventType), runtime.RawExtension{Raw: object}
			return event, nil, nil
		}
	}
	d.counts.standardEnvelopes.Add(1)
	return d.Serializer.Decode(frame, defaults, into)
}

// apiTokenDecoder decodes the objects of a watch: an ApiToken in the API
// server's shape with one JSON pass, anything else with client-go's decoder.
type apiTokenDecoder struct {
	runtime.Serializer
	counts *fastWatchCounts
}

// Decode is the JSON serializer's decoding of an ApiToken (case-sensitive, the
// integers kept as integers, unknown fields ignored) without its first pass to
// find the kind, which the prefix gives. It decodes with encoding/json's v2
// (go-json-experiment/json), case-sensitive as the serializer is, which
// decoded an event in three quarters of the time of sigs.k8s.io/json with half
// the allocations; an ApiToken has no untyped value for integers to be kept in.
// TestFastWatchDecodesApiTokensAsClientGoDoes compares both ways on a real
// API server's events.
func (d apiTokenDecoder) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if into != nil || !bytes.HasPrefix(data, apiTokenJSONPrefix) {
		d.counts.standardObjects.Add(1)
		return d.Serializer.Decode(data, defaults, into)
	}
	at := &tokensv1alpha1.ApiToken{}
	if err := jsonv2.Unmarshal(withoutManagedFields(data), at); err != nil {
		return nil, nil, fmt.Errorf("decode ApiToken watch event: %w", err)
	}
	d.counts.fast.Add(1)
	gvk := tokensv1alpha1.GroupVersion.WithKind("ApiToken")
	return at, &gvk, nil
}

// managedFieldsKey is the member withoutManagedFields cuts from the metadata.
var managedFieldsKey = []byte(`"managedFields"`)

// withoutManagedFields returns the JSON object data with its metadata's
// managedFields cut out, or data itself when it has none or is not as
// json.Marshal writes it. The cache keeps no managedFields of an ApiToken
// (stripForCache), and the watch feeds only the cache: decoded, the entries
// (their times, each through its own json.Unmarshal, and their fields copied)
// were a third of an event's decoding, thrown away at once.
func withoutManagedFields(data []byte) []byte {
	if !bytes.Contains(data, managedFieldsKey) {
		return data
	}
	var metadata []byte
	if eachJSONMember(data, func(key, value []byte) {
		if string(key) == `"metadata"` {
			metadata = value
		}
	}) != nil || metadata == nil {
		return data
	}
	// The member and the comma that separates it from a neighbour. Scanned
	// without building the members (eachJSONMember): this runs on every event.
	start, end, at, members := -1, 0, 0, 0
	if eachJSONMember(metadata, func(key, value []byte) {
		if start < 0 && bytes.Equal(key, managedFieldsKey) {
			start, end, at = offsetIn(data, key), offsetIn(data, value)+len(value), members
		}
		members++
	}) != nil || start < 0 {
		return data
	}
	switch {
	case at+1 < members:
		end++
	case at > 0:
		start--
	}
	return append(append(make([]byte, 0, len(data)-(end-start)), data[:start]...), data[end:]...)
}

// offsetIn is where part, a slice of whole, starts in it.
func offsetIn(whole, part []byte) int { return cap(whole) - cap(part) }

// fastWatchSerializer is the scheme's codecs with the JSON decoders above: the
// serializer of the REST client that watches ApiTokens (nothing else uses it).
type fastWatchSerializer struct {
	runtime.NegotiatedSerializer
	counts *fastWatchCounts
}

// SupportedMediaTypes is the codecs' media types with JSON's decoders replaced.
func (s fastWatchSerializer) SupportedMediaTypes() []runtime.SerializerInfo {
	infos := s.NegotiatedSerializer.SupportedMediaTypes()
	out := make([]runtime.SerializerInfo, 0, len(infos))
	for _, info := range infos {
		if info.MediaType == runtime.ContentTypeJSON && info.StreamSerializer != nil {
			info.Serializer = apiTokenDecoder{Serializer: info.Serializer, counts: s.counts}
			stream := *info.StreamSerializer
			stream.Serializer = watchEventDecoder{Serializer: stream.Serializer, counts: s.counts}
			stream.Framer = objectFramer{Framer: stream.Framer}
			info.StreamSerializer = &stream
		}
		out = append(out, info)
	}
	return out
}

// objectFramer splits a watch stream into its JSON objects with one light pass
// over the bytes; client-go's JSON framer makes two full encoding/json passes
// (one to find the value's end, one to copy it out). It checks only where each
// object ends; the decoders check the rest, and a frame that is not JSON fails
// there as it would have in the framer.
type objectFramer struct {
	runtime.Framer // client-go's, for writing
}

// NewFrameReader reads one object per Read, as client-go's JSON frame reader.
func (objectFramer) NewFrameReader(r io.ReadCloser) io.ReadCloser {
	return &objectFrameReader{r: bufio.NewReaderSize(r, 32<<10), closer: r}
}

// objectFrameReader is a frame reader with client-go's contract: each Read
// returns one whole object, or as much as fits with io.ErrShortBuffer and the
// rest in the next Reads.
type objectFrameReader struct {
	r         *bufio.Reader
	closer    io.Closer
	frame     []byte // reused: the caller copies each frame out before the next
	remaining []byte // of the last frame, when it did not fit
}

func (f *objectFrameReader) Read(data []byte) (int, error) {
	if len(f.remaining) == 0 {
		frame, err := f.next()
		if err != nil {
			return 0, err
		}
		f.remaining = frame
	}
	n := copy(data, f.remaining)
	if f.remaining = f.remaining[n:]; len(f.remaining) > 0 {
		return n, io.ErrShortBuffer
	}
	return n, nil
}

func (f *objectFrameReader) Close() error { return f.closer.Close() }

// next reads the next object, skipping the whitespace before it.
func (f *objectFrameReader) next() ([]byte, error) {
	f.frame = f.frame[:0]
	var scan objectScanner
	for {
		if f.r.Buffered() == 0 {
			if _, err := f.r.Peek(1); err != nil {
				if errors.Is(err, io.EOF) && scan.started {
					return nil, io.ErrUnexpectedEOF
				}
				return nil, err
			}
		}
		buffered, _ := f.r.Peek(f.r.Buffered())
		from, to, done, err := scan.scan(buffered)
		if err != nil {
			return nil, err
		}
		f.frame = append(f.frame, buffered[from:to]...)
		if _, err := f.r.Discard(to); err != nil {
			return nil, err
		}
		if done {
			return f.frame, nil
		}
	}
}

// objectScanner finds where a JSON object ends: it counts the brackets outside
// strings.
type objectScanner struct {
	depth                      int
	started, inString, escaped bool
}

// scan reads the next bytes of the stream: the object's bytes among them are
// buf[from:to], and done says the object ended at to.
func (s *objectScanner) scan(buf []byte) (from, to int, done bool, err error) {
	for i, c := range buf {
		if !s.started {
			switch c {
			case ' ', '\t', '\r', '\n':
				from = i + 1
				continue
			case '{':
				s.started, s.depth, from = true, 1, i
				continue
			default:
				return 0, 0, false, fmt.Errorf("watch stream: %q where a JSON object should begin", c)
			}
		}
		switch {
		case s.inString:
			switch {
			case s.escaped:
				s.escaped = false
			case c == '\\':
				s.escaped = true
			case c == '"':
				s.inString = false
			}
		case c == '"':
			s.inString = true
		case c == '{' || c == '[':
			s.depth++
		case c == '}' || c == ']':
			if s.depth--; s.depth == 0 {
				return from, i + 1, true, nil
			}
		}
	}
	return from, len(buf), false, nil
}

// fastApiTokenWatch opens the ApiToken watches of the cache's informer
// through a REST client with fastWatchSerializer; its lists stay as they were.
type fastApiTokenWatch struct {
	rest rest.Interface
}

// newFastApiTokenWatch returns the REST client for ApiToken watches, over the
// manager's HTTP client (its connection to the API server).
func newFastApiTokenWatch(cfg *rest.Config, httpClient *http.Client, scheme *runtime.Scheme, counts *fastWatchCounts) (*fastApiTokenWatch, error) {
	restCfg := rest.CopyConfig(cfg)
	restCfg.GroupVersion = &tokensv1alpha1.GroupVersion
	restCfg.APIPath = "/apis"
	restCfg.ContentType = runtime.ContentTypeJSON
	restCfg.AcceptContentTypes = runtime.ContentTypeJSON
	restCfg.NegotiatedSerializer = fastWatchSerializer{
		NegotiatedSerializer: serializer.WithoutConversionCodecFactory{CodecFactory: serializer.NewCodecFactory(scheme)},
		counts:               counts,
	}
	if restCfg.UserAgent == "" {
		restCfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	client, err := rest.RESTClientForConfigAndClient(restCfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("ApiToken watch client: %w", err)
	}
	return &fastApiTokenWatch{rest: client}, nil
}

// watch is the informer's watch of all ApiTokens, as controller-runtime's
// would open it (bookmarks allowed; the cache selects no ApiTokens by label or
// field, which cacheOptions' test holds).
func (w *fastApiTokenWatch) watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch, opts.AllowWatchBookmarks = true, true
	return w.rest.Get().Resource("apitokens").VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
}

// newInformer is the cache's informer constructor: a syncInformer (its
// handlers run on the watch's goroutine), with the ApiToken informer's
// watches opened by w.
func (w *fastApiTokenWatch) newInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	if listWatch, ok := lw.(*toolscache.ListWatch); ok {
		if _, isApiToken := obj.(*tokensv1alpha1.ApiToken); isApiToken {
			fast := *listWatch
			fast.WatchFuncWithContext = w.watch
			lw = &fast
		}
	}
	return newSyncInformer(lw, obj, resync, indexers)
}

// newCacheWithFastApiTokenWatch is cache.New with the ApiToken informer's
// watches opened by a fastApiTokenWatch over the cache's HTTP client (the
// manager's connection to the API server).
func newCacheWithFastApiTokenWatch(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
	w, err := newFastApiTokenWatch(cfg, opts.HTTPClient, opts.Scheme, &apiTokenWatchDecodes)
	if err != nil {
		return nil, err
	}
	opts.NewInformer = w.newInformer
	return cache.New(cfg, opts)
}
