package io.tokenway.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * ChatService generates chat completions, shaped like OpenAI's
 * /v1/chat/completions.
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class ChatServiceGrpc {

  private ChatServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "tokenway.v1.ChatService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<io.tokenway.v1.CreateChatCompletionRequest,
      io.tokenway.v1.CreateChatCompletionResponse> getCreateChatCompletionMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "CreateChatCompletion",
      requestType = io.tokenway.v1.CreateChatCompletionRequest.class,
      responseType = io.tokenway.v1.CreateChatCompletionResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.v1.CreateChatCompletionRequest,
      io.tokenway.v1.CreateChatCompletionResponse> getCreateChatCompletionMethod() {
    io.grpc.MethodDescriptor<io.tokenway.v1.CreateChatCompletionRequest, io.tokenway.v1.CreateChatCompletionResponse> getCreateChatCompletionMethod;
    if ((getCreateChatCompletionMethod = ChatServiceGrpc.getCreateChatCompletionMethod) == null) {
      synchronized (ChatServiceGrpc.class) {
        if ((getCreateChatCompletionMethod = ChatServiceGrpc.getCreateChatCompletionMethod) == null) {
          ChatServiceGrpc.getCreateChatCompletionMethod = getCreateChatCompletionMethod =
              io.grpc.MethodDescriptor.<io.tokenway.v1.CreateChatCompletionRequest, io.tokenway.v1.CreateChatCompletionResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "CreateChatCompletion"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.CreateChatCompletionRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.CreateChatCompletionResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ChatServiceMethodDescriptorSupplier("CreateChatCompletion"))
              .build();
        }
      }
    }
    return getCreateChatCompletionMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.v1.StreamChatCompletionRequest,
      io.tokenway.v1.StreamChatCompletionResponse> getStreamChatCompletionMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "StreamChatCompletion",
      requestType = io.tokenway.v1.StreamChatCompletionRequest.class,
      responseType = io.tokenway.v1.StreamChatCompletionResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<io.tokenway.v1.StreamChatCompletionRequest,
      io.tokenway.v1.StreamChatCompletionResponse> getStreamChatCompletionMethod() {
    io.grpc.MethodDescriptor<io.tokenway.v1.StreamChatCompletionRequest, io.tokenway.v1.StreamChatCompletionResponse> getStreamChatCompletionMethod;
    if ((getStreamChatCompletionMethod = ChatServiceGrpc.getStreamChatCompletionMethod) == null) {
      synchronized (ChatServiceGrpc.class) {
        if ((getStreamChatCompletionMethod = ChatServiceGrpc.getStreamChatCompletionMethod) == null) {
          ChatServiceGrpc.getStreamChatCompletionMethod = getStreamChatCompletionMethod =
              io.grpc.MethodDescriptor.<io.tokenway.v1.StreamChatCompletionRequest, io.tokenway.v1.StreamChatCompletionResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "StreamChatCompletion"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.StreamChatCompletionRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.StreamChatCompletionResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ChatServiceMethodDescriptorSupplier("StreamChatCompletion"))
              .build();
        }
      }
    }
    return getStreamChatCompletionMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.v1.StreamChatCompletionEventsRequest,
      com.google.api.HttpBody> getStreamChatCompletionEventsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "StreamChatCompletionEvents",
      requestType = io.tokenway.v1.StreamChatCompletionEventsRequest.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<io.tokenway.v1.StreamChatCompletionEventsRequest,
      com.google.api.HttpBody> getStreamChatCompletionEventsMethod() {
    io.grpc.MethodDescriptor<io.tokenway.v1.StreamChatCompletionEventsRequest, com.google.api.HttpBody> getStreamChatCompletionEventsMethod;
    if ((getStreamChatCompletionEventsMethod = ChatServiceGrpc.getStreamChatCompletionEventsMethod) == null) {
      synchronized (ChatServiceGrpc.class) {
        if ((getStreamChatCompletionEventsMethod = ChatServiceGrpc.getStreamChatCompletionEventsMethod) == null) {
          ChatServiceGrpc.getStreamChatCompletionEventsMethod = getStreamChatCompletionEventsMethod =
              io.grpc.MethodDescriptor.<io.tokenway.v1.StreamChatCompletionEventsRequest, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "StreamChatCompletionEvents"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.StreamChatCompletionEventsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new ChatServiceMethodDescriptorSupplier("StreamChatCompletionEvents"))
              .build();
        }
      }
    }
    return getStreamChatCompletionEventsMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static ChatServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ChatServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ChatServiceStub>() {
        @java.lang.Override
        public ChatServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ChatServiceStub(channel, callOptions);
        }
      };
    return ChatServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static ChatServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ChatServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ChatServiceBlockingV2Stub>() {
        @java.lang.Override
        public ChatServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ChatServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return ChatServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static ChatServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ChatServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ChatServiceBlockingStub>() {
        @java.lang.Override
        public ChatServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ChatServiceBlockingStub(channel, callOptions);
        }
      };
    return ChatServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static ChatServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ChatServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ChatServiceFutureStub>() {
        @java.lang.Override
        public ChatServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ChatServiceFutureStub(channel, callOptions);
        }
      };
    return ChatServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * ChatService generates chat completions, shaped like OpenAI's
   * /v1/chat/completions.
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * CreateChatCompletion renders the messages with the model's chat template
     * and answers once, with every choice complete.
     * </pre>
     */
    default void createChatCompletion(io.tokenway.v1.CreateChatCompletionRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.v1.CreateChatCompletionResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getCreateChatCompletionMethod(), responseObserver);
    }

    /**
     * <pre>
     * StreamChatCompletion is CreateChatCompletion streamed as text deltas.
     * A failure after the first chunk ends the stream with a status.
     * </pre>
     */
    default void streamChatCompletion(io.tokenway.v1.StreamChatCompletionRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.v1.StreamChatCompletionResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getStreamChatCompletionMethod(), responseObserver);
    }

    /**
     * <pre>
     * StreamChatCompletionEvents is StreamChatCompletion for the REST edge, as
     * Server-Sent Events written by the server: one `data: {json}` frame per
     * chunk (the JSON of StreamChatCompletionResponse), a last `data:
     * {"error": {...}}` frame if the stream fails after it started, and
     * `data: [DONE]` at the end. Envoy routes `"stream": true` here.
     * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
     * buf:lint:ignore RPC_REQUEST_RESPONSE_UNIQUE
     * </pre>
     */
    default void streamChatCompletionEvents(io.tokenway.v1.StreamChatCompletionEventsRequest request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getStreamChatCompletionEventsMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service ChatService.
   * <pre>
   * ChatService generates chat completions, shaped like OpenAI's
   * /v1/chat/completions.
   * </pre>
   */
  public static abstract class ChatServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return ChatServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service ChatService.
   * <pre>
   * ChatService generates chat completions, shaped like OpenAI's
   * /v1/chat/completions.
   * </pre>
   */
  public static final class ChatServiceStub
      extends io.grpc.stub.AbstractAsyncStub<ChatServiceStub> {
    private ChatServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ChatServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ChatServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * CreateChatCompletion renders the messages with the model's chat template
     * and answers once, with every choice complete.
     * </pre>
     */
    public void createChatCompletion(io.tokenway.v1.CreateChatCompletionRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.v1.CreateChatCompletionResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getCreateChatCompletionMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * StreamChatCompletion is CreateChatCompletion streamed as text deltas.
     * A failure after the first chunk ends the stream with a status.
     * </pre>
     */
    public void streamChatCompletion(io.tokenway.v1.StreamChatCompletionRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.v1.StreamChatCompletionResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getStreamChatCompletionMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * StreamChatCompletionEvents is StreamChatCompletion for the REST edge, as
     * Server-Sent Events written by the server: one `data: {json}` frame per
     * chunk (the JSON of StreamChatCompletionResponse), a last `data:
     * {"error": {...}}` frame if the stream fails after it started, and
     * `data: [DONE]` at the end. Envoy routes `"stream": true` here.
     * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
     * buf:lint:ignore RPC_REQUEST_RESPONSE_UNIQUE
     * </pre>
     */
    public void streamChatCompletionEvents(io.tokenway.v1.StreamChatCompletionEventsRequest request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getStreamChatCompletionEventsMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service ChatService.
   * <pre>
   * ChatService generates chat completions, shaped like OpenAI's
   * /v1/chat/completions.
   * </pre>
   */
  public static final class ChatServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<ChatServiceBlockingV2Stub> {
    private ChatServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ChatServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ChatServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * CreateChatCompletion renders the messages with the model's chat template
     * and answers once, with every choice complete.
     * </pre>
     */
    public io.tokenway.v1.CreateChatCompletionResponse createChatCompletion(io.tokenway.v1.CreateChatCompletionRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getCreateChatCompletionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * StreamChatCompletion is CreateChatCompletion streamed as text deltas.
     * A failure after the first chunk ends the stream with a status.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, io.tokenway.v1.StreamChatCompletionResponse>
        streamChatCompletion(io.tokenway.v1.StreamChatCompletionRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getStreamChatCompletionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * StreamChatCompletionEvents is StreamChatCompletion for the REST edge, as
     * Server-Sent Events written by the server: one `data: {json}` frame per
     * chunk (the JSON of StreamChatCompletionResponse), a last `data:
     * {"error": {...}}` frame if the stream fails after it started, and
     * `data: [DONE]` at the end. Envoy routes `"stream": true` here.
     * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
     * buf:lint:ignore RPC_REQUEST_RESPONSE_UNIQUE
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, com.google.api.HttpBody>
        streamChatCompletionEvents(io.tokenway.v1.StreamChatCompletionEventsRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getStreamChatCompletionEventsMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service ChatService.
   * <pre>
   * ChatService generates chat completions, shaped like OpenAI's
   * /v1/chat/completions.
   * </pre>
   */
  public static final class ChatServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<ChatServiceBlockingStub> {
    private ChatServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ChatServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ChatServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * CreateChatCompletion renders the messages with the model's chat template
     * and answers once, with every choice complete.
     * </pre>
     */
    public io.tokenway.v1.CreateChatCompletionResponse createChatCompletion(io.tokenway.v1.CreateChatCompletionRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getCreateChatCompletionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * StreamChatCompletion is CreateChatCompletion streamed as text deltas.
     * A failure after the first chunk ends the stream with a status.
     * </pre>
     */
    public java.util.Iterator<io.tokenway.v1.StreamChatCompletionResponse> streamChatCompletion(
        io.tokenway.v1.StreamChatCompletionRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getStreamChatCompletionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * StreamChatCompletionEvents is StreamChatCompletion for the REST edge, as
     * Server-Sent Events written by the server: one `data: {json}` frame per
     * chunk (the JSON of StreamChatCompletionResponse), a last `data:
     * {"error": {...}}` frame if the stream fails after it started, and
     * `data: [DONE]` at the end. Envoy routes `"stream": true` here.
     * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
     * buf:lint:ignore RPC_REQUEST_RESPONSE_UNIQUE
     * </pre>
     */
    public java.util.Iterator<com.google.api.HttpBody> streamChatCompletionEvents(
        io.tokenway.v1.StreamChatCompletionEventsRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getStreamChatCompletionEventsMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service ChatService.
   * <pre>
   * ChatService generates chat completions, shaped like OpenAI's
   * /v1/chat/completions.
   * </pre>
   */
  public static final class ChatServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<ChatServiceFutureStub> {
    private ChatServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ChatServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ChatServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * CreateChatCompletion renders the messages with the model's chat template
     * and answers once, with every choice complete.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.v1.CreateChatCompletionResponse> createChatCompletion(
        io.tokenway.v1.CreateChatCompletionRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getCreateChatCompletionMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_CREATE_CHAT_COMPLETION = 0;
  private static final int METHODID_STREAM_CHAT_COMPLETION = 1;
  private static final int METHODID_STREAM_CHAT_COMPLETION_EVENTS = 2;

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
        case METHODID_CREATE_CHAT_COMPLETION:
          serviceImpl.createChatCompletion((io.tokenway.v1.CreateChatCompletionRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.v1.CreateChatCompletionResponse>) responseObserver);
          break;
        case METHODID_STREAM_CHAT_COMPLETION:
          serviceImpl.streamChatCompletion((io.tokenway.v1.StreamChatCompletionRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.v1.StreamChatCompletionResponse>) responseObserver);
          break;
        case METHODID_STREAM_CHAT_COMPLETION_EVENTS:
          serviceImpl.streamChatCompletionEvents((io.tokenway.v1.StreamChatCompletionEventsRequest) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
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
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getCreateChatCompletionMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.v1.CreateChatCompletionRequest,
              io.tokenway.v1.CreateChatCompletionResponse>(
                service, METHODID_CREATE_CHAT_COMPLETION)))
        .addMethod(
          getStreamChatCompletionMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              io.tokenway.v1.StreamChatCompletionRequest,
              io.tokenway.v1.StreamChatCompletionResponse>(
                service, METHODID_STREAM_CHAT_COMPLETION)))
        .addMethod(
          getStreamChatCompletionEventsMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              io.tokenway.v1.StreamChatCompletionEventsRequest,
              com.google.api.HttpBody>(
                service, METHODID_STREAM_CHAT_COMPLETION_EVENTS)))
        .build();
  }

  private static abstract class ChatServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    ChatServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return io.tokenway.v1.ChatProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("ChatService");
    }
  }

  private static final class ChatServiceFileDescriptorSupplier
      extends ChatServiceBaseDescriptorSupplier {
    ChatServiceFileDescriptorSupplier() {}
  }

  private static final class ChatServiceMethodDescriptorSupplier
      extends ChatServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    ChatServiceMethodDescriptorSupplier(java.lang.String methodName) {
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
      synchronized (ChatServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new ChatServiceFileDescriptorSupplier())
              .addMethod(getCreateChatCompletionMethod())
              .addMethod(getStreamChatCompletionMethod())
              .addMethod(getStreamChatCompletionEventsMethod())
              .build();
        }
      }
    }
    return result;
  }
}
