package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// The operator's hot writes (an ApiToken's finalizer and status, its Secret)
// are answered with the object's metadata (as=PartialObjectMetadata), of which
// a pass needs only the new resourceVersion, the UID and the finalizers. The
// answer also carries every managedFields entry of the object: decoded whole
// (client-go's Result.Get), it cost the operator more allocation than anything
// else a write does (make bench). readMetadataAnswer reads the body into a
// reused buffer and takes those three fields from it.

// metadataAnswer is what a pass keeps of a write's answer.
type metadataAnswer struct {
	uid             string
	resourceVersion string
	finalizers      []string
}

// into sets them on the object written.
func (a metadataAnswer) into(obj metav1.Object) {
	obj.SetUID(types.UID(a.uid))
	obj.SetResourceVersion(a.resourceVersion)
	obj.SetFinalizers(a.finalizers)
}

// metadataRESTClient is a REST client of one group version, over httpClient,
// in the metadata client's form: the client of the writes whose answers
// readMetadataAnswer reads.
func metadataRESTClient(cfg *rest.Config, gv schema.GroupVersion, apiPath string, httpClient *http.Client) (rest.Interface, error) {
	metaCfg := metadata.ConfigFor(cfg)
	metaCfg.GroupVersion, metaCfg.APIPath = &gv, apiPath
	return rest.RESTClientForConfigAndClient(metaCfg, httpClient)
}

// answerBuffers are the buffers answers are read into. An answer is metadata
// only, no credentials; each buffer is cleared before it is put back all the
// same.
var answerBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readMetadataAnswer sends req, asking for the object's metadata as the answer,
// and reads it. Errors are client-go's (a Conflict is still apierrors.IsConflict).
func readMetadataAnswer(ctx context.Context, req *rest.Request) (metadataAnswer, error) {
	body, err := req.SetHeader("Accept", metadataAccept).Stream(ctx)
	if err != nil {
		return metadataAnswer{}, err
	}
	defer func() { _ = body.Close() }()
	buf := answerBuffers.Get().(*bytes.Buffer)
	defer func() {
		clear(buf.Bytes())
		buf.Reset()
		answerBuffers.Put(buf)
	}()
	if _, err := buf.ReadFrom(body); err != nil {
		return metadataAnswer{}, fmt.Errorf("read the answer: %w", err)
	}
	return parseMetadataAnswer(buf.Bytes())
}

// metadataAccept asks for an object's metadata, as the metadata client does.
const metadataAccept = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1," +
	"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

// protobufMagic opens every Kubernetes protobuf body.
var protobufMagic = []byte("k8s\x00")

var errNotMetadata = errors.New("the answer is not an object's metadata")

// parseMetadataAnswer reads a PartialObjectMetadata in protobuf (the API
// server's answer to the Accept the writes send) or, failing that, JSON.
func parseMetadataAnswer(body []byte) (metadataAnswer, error) {
	if raw, ok := bytes.CutPrefix(body, protobufMagic); ok {
		return parseProtobufAnswer(raw)
	}
	var answer metav1.PartialObjectMetadata
	if err := json.Unmarshal(body, &answer); err != nil || answer.Kind != "PartialObjectMetadata" {
		return metadataAnswer{}, errNotMetadata
	}
	return metadataAnswer{uid: string(answer.UID), resourceVersion: answer.ResourceVersion, finalizers: answer.Finalizers}, nil
}

// Field numbers of the messages read (k8s.io/apimachinery's generated.proto).
const (
	unknownTypeMeta   = 1 // runtime.Unknown
	unknownRaw        = 2
	typeMetaKind      = 2 // runtime.TypeMeta
	partialMetadata   = 1 // metav1.PartialObjectMetadata
	metaUID           = 5 // metav1.ObjectMeta
	metaResourceVer   = 6
	metaFinalizers    = 14
	answerKindWritten = "PartialObjectMetadata"
)

// parseProtobufAnswer reads the runtime.Unknown envelope, checks that it holds
// a PartialObjectMetadata, and reads its ObjectMeta's fields.
func parseProtobufAnswer(envelope []byte) (metadataAnswer, error) {
	var kind string
	var object []byte
	err := eachField(envelope, func(num protowire.Number, value []byte) {
		switch num {
		case unknownTypeMeta:
			_ = eachField(value, func(num protowire.Number, value []byte) {
				if num == typeMetaKind {
					kind = string(value)
				}
			})
		case unknownRaw:
			object = value
		}
	})
	if err != nil || kind != answerKindWritten {
		return metadataAnswer{}, errNotMetadata
	}
	var meta []byte
	if err := eachField(object, func(num protowire.Number, value []byte) {
		if num == partialMetadata {
			meta = value
		}
	}); err != nil {
		return metadataAnswer{}, errNotMetadata
	}
	var answer metadataAnswer
	err = eachField(meta, func(num protowire.Number, value []byte) {
		switch num {
		case metaUID:
			answer.uid = string(value)
		case metaResourceVer:
			answer.resourceVersion = string(value)
		case metaFinalizers:
			answer.finalizers = append(answer.finalizers, string(value))
		}
	})
	if err != nil || answer.resourceVersion == "" {
		return metadataAnswer{}, errNotMetadata
	}
	return answer, nil
}

// eachField calls fn with the number and bytes of each length-delimited field
// of msg (strings, bytes, messages), skipping the others.
func eachField(msg []byte, fn func(protowire.Number, []byte)) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		if typ == protowire.BytesType {
			value, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			fn(num, value)
			msg = msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			return protowire.ParseError(m)
		}
		msg = msg[m:]
	}
	return nil
}
