package io.tokenway.tokenizer.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * TokenizerService owns the model's Hugging Face tokenizer: encoding,
 * decoding, chat templates and streaming detokenization with stop strings.
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class TokenizerServiceGrpc {

  private TokenizerServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "tokenway.tokenizer.v1.TokenizerService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.TokenizeRequest,
      io.tokenway.tokenizer.v1.TokenizeResponse> getTokenizeMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Tokenize",
      requestType = io.tokenway.tokenizer.v1.TokenizeRequest.class,
      responseType = io.tokenway.tokenizer.v1.TokenizeResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.TokenizeRequest,
      io.tokenway.tokenizer.v1.TokenizeResponse> getTokenizeMethod() {
    io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.TokenizeRequest, io.tokenway.tokenizer.v1.TokenizeResponse> getTokenizeMethod;
    if ((getTokenizeMethod = TokenizerServiceGrpc.getTokenizeMethod) == null) {
      synchronized (TokenizerServiceGrpc.class) {
        if ((getTokenizeMethod = TokenizerServiceGrpc.getTokenizeMethod) == null) {
          TokenizerServiceGrpc.getTokenizeMethod = getTokenizeMethod =
              io.grpc.MethodDescriptor.<io.tokenway.tokenizer.v1.TokenizeRequest, io.tokenway.tokenizer.v1.TokenizeResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Tokenize"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.TokenizeRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.TokenizeResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenizerServiceMethodDescriptorSupplier("Tokenize"))
              .build();
        }
      }
    }
    return getTokenizeMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.DetokenizeRequest,
      io.tokenway.tokenizer.v1.DetokenizeResponse> getDetokenizeMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Detokenize",
      requestType = io.tokenway.tokenizer.v1.DetokenizeRequest.class,
      responseType = io.tokenway.tokenizer.v1.DetokenizeResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.DetokenizeRequest,
      io.tokenway.tokenizer.v1.DetokenizeResponse> getDetokenizeMethod() {
    io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.DetokenizeRequest, io.tokenway.tokenizer.v1.DetokenizeResponse> getDetokenizeMethod;
    if ((getDetokenizeMethod = TokenizerServiceGrpc.getDetokenizeMethod) == null) {
      synchronized (TokenizerServiceGrpc.class) {
        if ((getDetokenizeMethod = TokenizerServiceGrpc.getDetokenizeMethod) == null) {
          TokenizerServiceGrpc.getDetokenizeMethod = getDetokenizeMethod =
              io.grpc.MethodDescriptor.<io.tokenway.tokenizer.v1.DetokenizeRequest, io.tokenway.tokenizer.v1.DetokenizeResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Detokenize"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.DetokenizeRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.DetokenizeResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenizerServiceMethodDescriptorSupplier("Detokenize"))
              .build();
        }
      }
    }
    return getDetokenizeMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.RenderChatRequest,
      io.tokenway.tokenizer.v1.RenderChatResponse> getRenderChatMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "RenderChat",
      requestType = io.tokenway.tokenizer.v1.RenderChatRequest.class,
      responseType = io.tokenway.tokenizer.v1.RenderChatResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.RenderChatRequest,
      io.tokenway.tokenizer.v1.RenderChatResponse> getRenderChatMethod() {
    io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.RenderChatRequest, io.tokenway.tokenizer.v1.RenderChatResponse> getRenderChatMethod;
    if ((getRenderChatMethod = TokenizerServiceGrpc.getRenderChatMethod) == null) {
      synchronized (TokenizerServiceGrpc.class) {
        if ((getRenderChatMethod = TokenizerServiceGrpc.getRenderChatMethod) == null) {
          TokenizerServiceGrpc.getRenderChatMethod = getRenderChatMethod =
              io.grpc.MethodDescriptor.<io.tokenway.tokenizer.v1.RenderChatRequest, io.tokenway.tokenizer.v1.RenderChatResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "RenderChat"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.RenderChatRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.RenderChatResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenizerServiceMethodDescriptorSupplier("RenderChat"))
              .build();
        }
      }
    }
    return getRenderChatMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.DetokenizeStreamRequest,
      io.tokenway.tokenizer.v1.DetokenizeStreamResponse> getDetokenizeStreamMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "DetokenizeStream",
      requestType = io.tokenway.tokenizer.v1.DetokenizeStreamRequest.class,
      responseType = io.tokenway.tokenizer.v1.DetokenizeStreamResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
  public static io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.DetokenizeStreamRequest,
      io.tokenway.tokenizer.v1.DetokenizeStreamResponse> getDetokenizeStreamMethod() {
    io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.DetokenizeStreamRequest, io.tokenway.tokenizer.v1.DetokenizeStreamResponse> getDetokenizeStreamMethod;
    if ((getDetokenizeStreamMethod = TokenizerServiceGrpc.getDetokenizeStreamMethod) == null) {
      synchronized (TokenizerServiceGrpc.class) {
        if ((getDetokenizeStreamMethod = TokenizerServiceGrpc.getDetokenizeStreamMethod) == null) {
          TokenizerServiceGrpc.getDetokenizeStreamMethod = getDetokenizeStreamMethod =
              io.grpc.MethodDescriptor.<io.tokenway.tokenizer.v1.DetokenizeStreamRequest, io.tokenway.tokenizer.v1.DetokenizeStreamResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "DetokenizeStream"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.DetokenizeStreamRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.DetokenizeStreamResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenizerServiceMethodDescriptorSupplier("DetokenizeStream"))
              .build();
        }
      }
    }
    return getDetokenizeStreamMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.GetTokenizerInfoRequest,
      io.tokenway.tokenizer.v1.GetTokenizerInfoResponse> getGetTokenizerInfoMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetTokenizerInfo",
      requestType = io.tokenway.tokenizer.v1.GetTokenizerInfoRequest.class,
      responseType = io.tokenway.tokenizer.v1.GetTokenizerInfoResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.GetTokenizerInfoRequest,
      io.tokenway.tokenizer.v1.GetTokenizerInfoResponse> getGetTokenizerInfoMethod() {
    io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.GetTokenizerInfoRequest, io.tokenway.tokenizer.v1.GetTokenizerInfoResponse> getGetTokenizerInfoMethod;
    if ((getGetTokenizerInfoMethod = TokenizerServiceGrpc.getGetTokenizerInfoMethod) == null) {
      synchronized (TokenizerServiceGrpc.class) {
        if ((getGetTokenizerInfoMethod = TokenizerServiceGrpc.getGetTokenizerInfoMethod) == null) {
          TokenizerServiceGrpc.getGetTokenizerInfoMethod = getGetTokenizerInfoMethod =
              io.grpc.MethodDescriptor.<io.tokenway.tokenizer.v1.GetTokenizerInfoRequest, io.tokenway.tokenizer.v1.GetTokenizerInfoResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetTokenizerInfo"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.GetTokenizerInfoRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.GetTokenizerInfoResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenizerServiceMethodDescriptorSupplier("GetTokenizerInfo"))
              .build();
        }
      }
    }
    return getGetTokenizerInfoMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.GetVocabularyRequest,
      io.tokenway.tokenizer.v1.GetVocabularyResponse> getGetVocabularyMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetVocabulary",
      requestType = io.tokenway.tokenizer.v1.GetVocabularyRequest.class,
      responseType = io.tokenway.tokenizer.v1.GetVocabularyResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.GetVocabularyRequest,
      io.tokenway.tokenizer.v1.GetVocabularyResponse> getGetVocabularyMethod() {
    io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.GetVocabularyRequest, io.tokenway.tokenizer.v1.GetVocabularyResponse> getGetVocabularyMethod;
    if ((getGetVocabularyMethod = TokenizerServiceGrpc.getGetVocabularyMethod) == null) {
      synchronized (TokenizerServiceGrpc.class) {
        if ((getGetVocabularyMethod = TokenizerServiceGrpc.getGetVocabularyMethod) == null) {
          TokenizerServiceGrpc.getGetVocabularyMethod = getGetVocabularyMethod =
              io.grpc.MethodDescriptor.<io.tokenway.tokenizer.v1.GetVocabularyRequest, io.tokenway.tokenizer.v1.GetVocabularyResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetVocabulary"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.GetVocabularyRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.GetVocabularyResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenizerServiceMethodDescriptorSupplier("GetVocabulary"))
              .build();
        }
      }
    }
    return getGetVocabularyMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.GetTokenizerSpecRequest,
      io.tokenway.tokenizer.v1.GetTokenizerSpecResponse> getGetTokenizerSpecMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetTokenizerSpec",
      requestType = io.tokenway.tokenizer.v1.GetTokenizerSpecRequest.class,
      responseType = io.tokenway.tokenizer.v1.GetTokenizerSpecResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.GetTokenizerSpecRequest,
      io.tokenway.tokenizer.v1.GetTokenizerSpecResponse> getGetTokenizerSpecMethod() {
    io.grpc.MethodDescriptor<io.tokenway.tokenizer.v1.GetTokenizerSpecRequest, io.tokenway.tokenizer.v1.GetTokenizerSpecResponse> getGetTokenizerSpecMethod;
    if ((getGetTokenizerSpecMethod = TokenizerServiceGrpc.getGetTokenizerSpecMethod) == null) {
      synchronized (TokenizerServiceGrpc.class) {
        if ((getGetTokenizerSpecMethod = TokenizerServiceGrpc.getGetTokenizerSpecMethod) == null) {
          TokenizerServiceGrpc.getGetTokenizerSpecMethod = getGetTokenizerSpecMethod =
              io.grpc.MethodDescriptor.<io.tokenway.tokenizer.v1.GetTokenizerSpecRequest, io.tokenway.tokenizer.v1.GetTokenizerSpecResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetTokenizerSpec"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.GetTokenizerSpecRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.tokenizer.v1.GetTokenizerSpecResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenizerServiceMethodDescriptorSupplier("GetTokenizerSpec"))
              .build();
        }
      }
    }
    return getGetTokenizerSpecMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static TokenizerServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<TokenizerServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<TokenizerServiceStub>() {
        @java.lang.Override
        public TokenizerServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new TokenizerServiceStub(channel, callOptions);
        }
      };
    return TokenizerServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static TokenizerServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<TokenizerServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<TokenizerServiceBlockingV2Stub>() {
        @java.lang.Override
        public TokenizerServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new TokenizerServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return TokenizerServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static TokenizerServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<TokenizerServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<TokenizerServiceBlockingStub>() {
        @java.lang.Override
        public TokenizerServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new TokenizerServiceBlockingStub(channel, callOptions);
        }
      };
    return TokenizerServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static TokenizerServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<TokenizerServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<TokenizerServiceFutureStub>() {
        @java.lang.Override
        public TokenizerServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new TokenizerServiceFutureStub(channel, callOptions);
        }
      };
    return TokenizerServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * TokenizerService owns the model's Hugging Face tokenizer: encoding,
   * decoding, chat templates and streaming detokenization with stop strings.
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * Tokenize encodes a batch of texts. The texts are raw prompts: special
     * token strings in them become the special tokens (a completions prompt may
     * contain them on purpose). Each text is bounded: see max_tokens_per_text.
     * </pre>
     */
    default void tokenize(io.tokenway.tokenizer.v1.TokenizeRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.TokenizeResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getTokenizeMethod(), responseObserver);
    }

    /**
     * <pre>
     * Detokenize decodes a batch of token id sequences.
     * </pre>
     */
    default void detokenize(io.tokenway.tokenizer.v1.DetokenizeRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.DetokenizeResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getDetokenizeMethod(), responseObserver);
    }

    /**
     * <pre>
     * RenderChat applies the chat template and returns prompt token ids ready
     * for generation (exactly one BOS) and the model's stop token ids. Message
     * contents are data: a special token string inside a content is encoded as
     * plain text; only the template's own markup produces special tokens. The
     * prompt is bounded: see max_prompt_tokens.
     * </pre>
     */
    default void renderChat(io.tokenway.tokenizer.v1.RenderChatRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.RenderChatResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getRenderChatMethod(), responseObserver);
    }

    /**
     * <pre>
     * DetokenizeStream turns one generation's token ids into text deltas. The
     * server keeps the decoding state of the stream: the first message is a
     * start, then token chunks follow; each chunk is answered by exactly one
     * response. Stop strings are matched across token boundaries; only text
     * that could still begin a stop string is held back.
     * </pre>
     */
    default io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.DetokenizeStreamRequest> detokenizeStream(
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.DetokenizeStreamResponse> responseObserver) {
      return io.grpc.stub.ServerCalls.asyncUnimplementedStreamingCall(getDetokenizeStreamMethod(), responseObserver);
    }

    /**
     * <pre>
     * GetTokenizerInfo describes the tokenizer.
     * </pre>
     */
    default void getTokenizerInfo(io.tokenway.tokenizer.v1.GetTokenizerInfoRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.GetTokenizerInfoResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetTokenizerInfoMethod(), responseObserver);
    }

    /**
     * <pre>
     * GetVocabulary returns the bytes of every token id, for deriving logprob
     * texts and bytes without a decode call per token. Fetch it once per
     * fingerprint.
     * </pre>
     */
    default void getVocabulary(io.tokenway.tokenizer.v1.GetVocabularyRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.GetVocabularyResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetVocabularyMethod(), responseObserver);
    }

    /**
     * <pre>
     * GetTokenizerSpec returns the served tokenizer serialized (the Hugging Face
     * `tokenizers` JSON, with every token the service added), so that a peer
     * can run the same streaming detokenizer in its own process instead of a
     * DetokenizeStream call per chunk. Fetch it once per fingerprint.
     * </pre>
     */
    default void getTokenizerSpec(io.tokenway.tokenizer.v1.GetTokenizerSpecRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.GetTokenizerSpecResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetTokenizerSpecMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service TokenizerService.
   * <pre>
   * TokenizerService owns the model's Hugging Face tokenizer: encoding,
   * decoding, chat templates and streaming detokenization with stop strings.
   * </pre>
   */
  public static abstract class TokenizerServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return TokenizerServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service TokenizerService.
   * <pre>
   * TokenizerService owns the model's Hugging Face tokenizer: encoding,
   * decoding, chat templates and streaming detokenization with stop strings.
   * </pre>
   */
  public static final class TokenizerServiceStub
      extends io.grpc.stub.AbstractAsyncStub<TokenizerServiceStub> {
    private TokenizerServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected TokenizerServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new TokenizerServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Tokenize encodes a batch of texts. The texts are raw prompts: special
     * token strings in them become the special tokens (a completions prompt may
     * contain them on purpose). Each text is bounded: see max_tokens_per_text.
     * </pre>
     */
    public void tokenize(io.tokenway.tokenizer.v1.TokenizeRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.TokenizeResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getTokenizeMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Detokenize decodes a batch of token id sequences.
     * </pre>
     */
    public void detokenize(io.tokenway.tokenizer.v1.DetokenizeRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.DetokenizeResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getDetokenizeMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * RenderChat applies the chat template and returns prompt token ids ready
     * for generation (exactly one BOS) and the model's stop token ids. Message
     * contents are data: a special token string inside a content is encoded as
     * plain text; only the template's own markup produces special tokens. The
     * prompt is bounded: see max_prompt_tokens.
     * </pre>
     */
    public void renderChat(io.tokenway.tokenizer.v1.RenderChatRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.RenderChatResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getRenderChatMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * DetokenizeStream turns one generation's token ids into text deltas. The
     * server keeps the decoding state of the stream: the first message is a
     * start, then token chunks follow; each chunk is answered by exactly one
     * response. Stop strings are matched across token boundaries; only text
     * that could still begin a stop string is held back.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.DetokenizeStreamRequest> detokenizeStream(
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.DetokenizeStreamResponse> responseObserver) {
      return io.grpc.stub.ClientCalls.asyncBidiStreamingCall(
          getChannel().newCall(getDetokenizeStreamMethod(), getCallOptions()), responseObserver);
    }

    /**
     * <pre>
     * GetTokenizerInfo describes the tokenizer.
     * </pre>
     */
    public void getTokenizerInfo(io.tokenway.tokenizer.v1.GetTokenizerInfoRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.GetTokenizerInfoResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetTokenizerInfoMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * GetVocabulary returns the bytes of every token id, for deriving logprob
     * texts and bytes without a decode call per token. Fetch it once per
     * fingerprint.
     * </pre>
     */
    public void getVocabulary(io.tokenway.tokenizer.v1.GetVocabularyRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.GetVocabularyResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetVocabularyMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * GetTokenizerSpec returns the served tokenizer serialized (the Hugging Face
     * `tokenizers` JSON, with every token the service added), so that a peer
     * can run the same streaming detokenizer in its own process instead of a
     * DetokenizeStream call per chunk. Fetch it once per fingerprint.
     * </pre>
     */
    public void getTokenizerSpec(io.tokenway.tokenizer.v1.GetTokenizerSpecRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.GetTokenizerSpecResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetTokenizerSpecMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service TokenizerService.
   * <pre>
   * TokenizerService owns the model's Hugging Face tokenizer: encoding,
   * decoding, chat templates and streaming detokenization with stop strings.
   * </pre>
   */
  public static final class TokenizerServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<TokenizerServiceBlockingV2Stub> {
    private TokenizerServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected TokenizerServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new TokenizerServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * Tokenize encodes a batch of texts. The texts are raw prompts: special
     * token strings in them become the special tokens (a completions prompt may
     * contain them on purpose). Each text is bounded: see max_tokens_per_text.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.TokenizeResponse tokenize(io.tokenway.tokenizer.v1.TokenizeRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getTokenizeMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Detokenize decodes a batch of token id sequences.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.DetokenizeResponse detokenize(io.tokenway.tokenizer.v1.DetokenizeRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getDetokenizeMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * RenderChat applies the chat template and returns prompt token ids ready
     * for generation (exactly one BOS) and the model's stop token ids. Message
     * contents are data: a special token string inside a content is encoded as
     * plain text; only the template's own markup produces special tokens. The
     * prompt is bounded: see max_prompt_tokens.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.RenderChatResponse renderChat(io.tokenway.tokenizer.v1.RenderChatRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getRenderChatMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * DetokenizeStream turns one generation's token ids into text deltas. The
     * server keeps the decoding state of the stream: the first message is a
     * start, then token chunks follow; each chunk is answered by exactly one
     * response. Stop strings are matched across token boundaries; only text
     * that could still begin a stop string is held back.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<io.tokenway.tokenizer.v1.DetokenizeStreamRequest, io.tokenway.tokenizer.v1.DetokenizeStreamResponse>
        detokenizeStream() {
      return io.grpc.stub.ClientCalls.blockingBidiStreamingCall(
          getChannel(), getDetokenizeStreamMethod(), getCallOptions());
    }

    /**
     * <pre>
     * GetTokenizerInfo describes the tokenizer.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.GetTokenizerInfoResponse getTokenizerInfo(io.tokenway.tokenizer.v1.GetTokenizerInfoRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetTokenizerInfoMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetVocabulary returns the bytes of every token id, for deriving logprob
     * texts and bytes without a decode call per token. Fetch it once per
     * fingerprint.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.GetVocabularyResponse getVocabulary(io.tokenway.tokenizer.v1.GetVocabularyRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetVocabularyMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetTokenizerSpec returns the served tokenizer serialized (the Hugging Face
     * `tokenizers` JSON, with every token the service added), so that a peer
     * can run the same streaming detokenizer in its own process instead of a
     * DetokenizeStream call per chunk. Fetch it once per fingerprint.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.GetTokenizerSpecResponse getTokenizerSpec(io.tokenway.tokenizer.v1.GetTokenizerSpecRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetTokenizerSpecMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service TokenizerService.
   * <pre>
   * TokenizerService owns the model's Hugging Face tokenizer: encoding,
   * decoding, chat templates and streaming detokenization with stop strings.
   * </pre>
   */
  public static final class TokenizerServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<TokenizerServiceBlockingStub> {
    private TokenizerServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected TokenizerServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new TokenizerServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Tokenize encodes a batch of texts. The texts are raw prompts: special
     * token strings in them become the special tokens (a completions prompt may
     * contain them on purpose). Each text is bounded: see max_tokens_per_text.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.TokenizeResponse tokenize(io.tokenway.tokenizer.v1.TokenizeRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getTokenizeMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Detokenize decodes a batch of token id sequences.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.DetokenizeResponse detokenize(io.tokenway.tokenizer.v1.DetokenizeRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getDetokenizeMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * RenderChat applies the chat template and returns prompt token ids ready
     * for generation (exactly one BOS) and the model's stop token ids. Message
     * contents are data: a special token string inside a content is encoded as
     * plain text; only the template's own markup produces special tokens. The
     * prompt is bounded: see max_prompt_tokens.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.RenderChatResponse renderChat(io.tokenway.tokenizer.v1.RenderChatRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getRenderChatMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetTokenizerInfo describes the tokenizer.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.GetTokenizerInfoResponse getTokenizerInfo(io.tokenway.tokenizer.v1.GetTokenizerInfoRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetTokenizerInfoMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetVocabulary returns the bytes of every token id, for deriving logprob
     * texts and bytes without a decode call per token. Fetch it once per
     * fingerprint.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.GetVocabularyResponse getVocabulary(io.tokenway.tokenizer.v1.GetVocabularyRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetVocabularyMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetTokenizerSpec returns the served tokenizer serialized (the Hugging Face
     * `tokenizers` JSON, with every token the service added), so that a peer
     * can run the same streaming detokenizer in its own process instead of a
     * DetokenizeStream call per chunk. Fetch it once per fingerprint.
     * </pre>
     */
    public io.tokenway.tokenizer.v1.GetTokenizerSpecResponse getTokenizerSpec(io.tokenway.tokenizer.v1.GetTokenizerSpecRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetTokenizerSpecMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service TokenizerService.
   * <pre>
   * TokenizerService owns the model's Hugging Face tokenizer: encoding,
   * decoding, chat templates and streaming detokenization with stop strings.
   * </pre>
   */
  public static final class TokenizerServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<TokenizerServiceFutureStub> {
    private TokenizerServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected TokenizerServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new TokenizerServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Tokenize encodes a batch of texts. The texts are raw prompts: special
     * token strings in them become the special tokens (a completions prompt may
     * contain them on purpose). Each text is bounded: see max_tokens_per_text.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.tokenizer.v1.TokenizeResponse> tokenize(
        io.tokenway.tokenizer.v1.TokenizeRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getTokenizeMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Detokenize decodes a batch of token id sequences.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.tokenizer.v1.DetokenizeResponse> detokenize(
        io.tokenway.tokenizer.v1.DetokenizeRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getDetokenizeMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * RenderChat applies the chat template and returns prompt token ids ready
     * for generation (exactly one BOS) and the model's stop token ids. Message
     * contents are data: a special token string inside a content is encoded as
     * plain text; only the template's own markup produces special tokens. The
     * prompt is bounded: see max_prompt_tokens.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.tokenizer.v1.RenderChatResponse> renderChat(
        io.tokenway.tokenizer.v1.RenderChatRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getRenderChatMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * GetTokenizerInfo describes the tokenizer.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.tokenizer.v1.GetTokenizerInfoResponse> getTokenizerInfo(
        io.tokenway.tokenizer.v1.GetTokenizerInfoRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetTokenizerInfoMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * GetVocabulary returns the bytes of every token id, for deriving logprob
     * texts and bytes without a decode call per token. Fetch it once per
     * fingerprint.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.tokenizer.v1.GetVocabularyResponse> getVocabulary(
        io.tokenway.tokenizer.v1.GetVocabularyRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetVocabularyMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * GetTokenizerSpec returns the served tokenizer serialized (the Hugging Face
     * `tokenizers` JSON, with every token the service added), so that a peer
     * can run the same streaming detokenizer in its own process instead of a
     * DetokenizeStream call per chunk. Fetch it once per fingerprint.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.tokenizer.v1.GetTokenizerSpecResponse> getTokenizerSpec(
        io.tokenway.tokenizer.v1.GetTokenizerSpecRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetTokenizerSpecMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_TOKENIZE = 0;
  private static final int METHODID_DETOKENIZE = 1;
  private static final int METHODID_RENDER_CHAT = 2;
  private static final int METHODID_GET_TOKENIZER_INFO = 3;
  private static final int METHODID_GET_VOCABULARY = 4;
  private static final int METHODID_GET_TOKENIZER_SPEC = 5;
  private static final int METHODID_DETOKENIZE_STREAM = 6;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final AsyncService serviceImpl;
    private final int methodId;

    MethodHandlers(AsyncService serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_TOKENIZE:
          serviceImpl.tokenize((io.tokenway.tokenizer.v1.TokenizeRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.TokenizeResponse>) responseObserver);
          break;
        case METHODID_DETOKENIZE:
          serviceImpl.detokenize((io.tokenway.tokenizer.v1.DetokenizeRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.DetokenizeResponse>) responseObserver);
          break;
        case METHODID_RENDER_CHAT:
          serviceImpl.renderChat((io.tokenway.tokenizer.v1.RenderChatRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.RenderChatResponse>) responseObserver);
          break;
        case METHODID_GET_TOKENIZER_INFO:
          serviceImpl.getTokenizerInfo((io.tokenway.tokenizer.v1.GetTokenizerInfoRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.GetTokenizerInfoResponse>) responseObserver);
          break;
        case METHODID_GET_VOCABULARY:
          serviceImpl.getVocabulary((io.tokenway.tokenizer.v1.GetVocabularyRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.GetVocabularyResponse>) responseObserver);
          break;
        case METHODID_GET_TOKENIZER_SPEC:
          serviceImpl.getTokenizerSpec((io.tokenway.tokenizer.v1.GetTokenizerSpecRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.GetTokenizerSpecResponse>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_DETOKENIZE_STREAM:
          return (io.grpc.stub.StreamObserver<Req>) serviceImpl.detokenizeStream(
              (io.grpc.stub.StreamObserver<io.tokenway.tokenizer.v1.DetokenizeStreamResponse>) responseObserver);
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getTokenizeMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.tokenizer.v1.TokenizeRequest,
              io.tokenway.tokenizer.v1.TokenizeResponse>(
                service, METHODID_TOKENIZE)))
        .addMethod(
          getDetokenizeMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.tokenizer.v1.DetokenizeRequest,
              io.tokenway.tokenizer.v1.DetokenizeResponse>(
                service, METHODID_DETOKENIZE)))
        .addMethod(
          getRenderChatMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.tokenizer.v1.RenderChatRequest,
              io.tokenway.tokenizer.v1.RenderChatResponse>(
                service, METHODID_RENDER_CHAT)))
        .addMethod(
          getDetokenizeStreamMethod(),
          io.grpc.stub.ServerCalls.asyncBidiStreamingCall(
            new MethodHandlers<
              io.tokenway.tokenizer.v1.DetokenizeStreamRequest,
              io.tokenway.tokenizer.v1.DetokenizeStreamResponse>(
                service, METHODID_DETOKENIZE_STREAM)))
        .addMethod(
          getGetTokenizerInfoMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.tokenizer.v1.GetTokenizerInfoRequest,
              io.tokenway.tokenizer.v1.GetTokenizerInfoResponse>(
                service, METHODID_GET_TOKENIZER_INFO)))
        .addMethod(
          getGetVocabularyMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.tokenizer.v1.GetVocabularyRequest,
              io.tokenway.tokenizer.v1.GetVocabularyResponse>(
                service, METHODID_GET_VOCABULARY)))
        .addMethod(
          getGetTokenizerSpecMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.tokenizer.v1.GetTokenizerSpecRequest,
              io.tokenway.tokenizer.v1.GetTokenizerSpecResponse>(
                service, METHODID_GET_TOKENIZER_SPEC)))
        .build();
  }

  private static abstract class TokenizerServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    TokenizerServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return io.tokenway.tokenizer.v1.TokenizerProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("TokenizerService");
    }
  }

  private static final class TokenizerServiceFileDescriptorSupplier
      extends TokenizerServiceBaseDescriptorSupplier {
    TokenizerServiceFileDescriptorSupplier() {}
  }

  private static final class TokenizerServiceMethodDescriptorSupplier
      extends TokenizerServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    TokenizerServiceMethodDescriptorSupplier(java.lang.String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (TokenizerServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new TokenizerServiceFileDescriptorSupplier())
              .addMethod(getTokenizeMethod())
              .addMethod(getDetokenizeMethod())
              .addMethod(getRenderChatMethod())
              .addMethod(getDetokenizeStreamMethod())
              .addMethod(getGetTokenizerInfoMethod())
              .addMethod(getGetVocabularyMethod())
              .addMethod(getGetTokenizerSpecMethod())
              .build();
        }
      }
    }
    return result;
  }
}
