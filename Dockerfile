# Two images from one Dockerfile:
#   docker build -t apitoken-operator:dev .                                   (the operator, the default target)
#   docker build --target tokenservice -t apitoken-tokenservice:dev .        (the reference Token Service)
# VERSION is stamped into the binary (--version): --build-arg VERSION=v0.1.0.
ARG VERSION=dev

FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
COPY go.mod go.sum ./
RUN go mod download

COPY main.go main.go
COPY api/ api/
COPY controllers/ controllers/
COPY pkg/ pkg/
COPY internal/ internal/
COPY cmd/tokenservice/ cmd/tokenservice/
ENV CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64}

# The same build as framework.BuildBinaries, which the tests run (CGO_ENABLED=0, -trimpath).
FROM builder AS manager-build
ARG VERSION
RUN go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o manager .

FROM builder AS tokenservice-build
ARG VERSION
RUN go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o tokenservice ./cmd/tokenservice

# distroless: no shell, no package manager; runs as uid 65532. The database
# lives on a volume mounted at /data (config/tokenservice, the chart).
FROM gcr.io/distroless/static:nonroot AS tokenservice
WORKDIR /
COPY --from=tokenservice-build /workspace/tokenservice .
USER 65532:65532
ENTRYPOINT ["/tokenservice"]

# The operator: the last stage, so a plain `docker build .` builds it.
FROM gcr.io/distroless/static:nonroot AS manager
WORKDIR /
COPY --from=manager-build /workspace/manager .
USER 65532:65532
ENTRYPOINT ["/manager"]
