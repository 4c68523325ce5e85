// SPDX-License-Identifier: GPL-3.0-or-later
// Type declarations for argos-client.js, the gr-argos JavaScript client (wire protocol v1).
// Keep this file next to argos-client.js; see docs/js-client.md.

/** Size of the v1 frame header in bytes (a frame's headerLen may be larger). */
export const HEADER_SIZE: 64;
/** The wire protocol version this module speaks. */
export const PROTOCOL_VERSION: 1;

/** A message does not follow the gr-argos wire protocol; `message` says how. */
export class ProtocolError extends Error {
  constructor(message: string);
  readonly name: "ProtocolError";
}

/** What a trace shows of its frame period (header bytes 11 and 14); "" = not stated. */
export type Detector = "peak" | "average" | "sample" | "";

/** One decoded spectrum frame. */
export interface SpectrumFrame {
  /** Power per bin in dB, lowest frequency first (a copy: yours to keep or change). */
  power: Float32Array;
  /** The detector of `power`. */
  detector: Detector;
  /** The second trace over the same bins and period (flags bit 1, sent only to a client
   * that asked with secondTrace), in dB like `power`; null without one. */
  secondPowerDb: Float32Array | null;
  /** The detector of `secondPowerDb` ("" without a second trace). */
  secondDetector: Detector;
  /** Centre frequency of the spectrum, Hz. */
  centerFreqHz: number;
  /** Frequency span covered by the bins, Hz. */
  spanHz: number;
  /** Number of bins (power.length), at least 1. */
  binCount: number;
  /** Per-stream frame counter; exact up to 2**53 - 1, rounded above (see sequenceBig). */
  sequence: number;
  /** Per-stream frame counter, exact (u64). */
  sequenceBig: bigint;
  /** Frames of this stream the server dropped for this client since its previous frame. */
  missed: number;
  /** Sent again from the server's resume ring (missed while reconnecting, or a backfill),
   * not live: header byte 15, bit 0. */
  replayed: boolean;
  /** The stream this frame belongs to (an id from hello.streams). */
  streamId: number;
  /** Capture time, ns since the Unix epoch (i64). */
  timestampNs: bigint;
  /** Capture time, ms since the Unix epoch (comparable with Date.now()). */
  timestampMs: number;
  /** Payload encoding as sent: 0 = float32, 1 = int16, 2 = uint8 (power is float32 dB either way). */
  encoding: number;
  /** Header flags as sent: bit 0 = the payload was deflated, bit 1 = a second trace. */
  flags: number;
  /** Offset of the payload in the frame, bytes (64, or more with header extensions). */
  headerLen: number;
  /** Protocol version byte (1). */
  version: number;
  /** Binary message type (1 = spectrum frame). */
  msgType: number;
  /** uint8: dB of level 0; 0 for the other encodings. */
  scaleOffsetDb: number;
  /** uint8: dB per level (the error bound is half of it); 0 for the other encodings. */
  scaleStepDb: number;
}

/** The payload encodings a client can ask for: ["float32", "int16", "uint8"]. */
export const ENCODINGS: readonly FrameEncoding[];
export type FrameEncoding = "float32" | "int16" | "uint8";

/**
 * Decode one v1 binary spectrum frame (a whole binary WebSocket message) that is not
 * compressed.
 * @throws {ProtocolError} if the frame is malformed, uses something v1 does not define, or
 *   is compressed (flags bit 0: use decodeFrameAsync).
 */
export function decodeFrame(data: ArrayBuffer | ArrayBufferView): SpectrumFrame;

/**
 * Decode any v1 binary spectrum frame, inflating a compressed payload with
 * DecompressionStream("deflate-raw") (never past the bytes bin_count needs).
 * Rejects with a ProtocolError for a malformed frame.
 */
export function decodeFrameAsync(data: ArrayBuffer | ArrayBufferView): Promise<SpectrumFrame>;

/** Centre frequency of every bin, Hz: centerFreqHz + (i - floor(binCount / 2)) * spanHz / binCount. */
export function binFreqsHz(frame: Pick<SpectrumFrame, "centerFreqHz" | "spanHz" | "binCount">): Float64Array;

/** Any JSON message: an object with a non-empty string `type`. */
export interface ArgosMessage {
  type: string;
  [key: string]: unknown;
}

/**
 * Decode a JSON text message.
 * @throws {ProtocolError} if it is not JSON, not an object, or has no string `type`.
 */
export function decodeMessage(text: string): ArgosMessage;

/** One stream as the hello message describes it. */
export interface StreamDescription {
  id: number;
  name: string;
  bins: number;
  center_freq_hz: number;
  span_hz: number;
  /** "float32" = encoding 0. */
  encoding: string;
  /** A "uint8" stream's fixed step in dB (0: automatic). */
  step_db?: number;
  fps: number;
  /** What the frames show of each frame period, when the producer says. */
  detector?: Exclude<Detector, "">;
  /** The detector of the second trace, for a stream that offers one (ask with secondTrace). */
  second_detector?: Exclude<Detector, "">;
  [key: string]: unknown;
}

/** The first message on every connection. */
export interface HelloMessage extends ArgosMessage {
  type: "hello";
  server: string;
  version: string;
  protocol: number;
  /** The run of frames served: chosen when the server starts (a gateway makes it from its
   * publishers'); a new one means it restarted. */
  session: string;
  /** This server process (the workers of one gateway share a session, not an instance). */
  instance: string;
  streams: StreamDescription[];
  queue_depth: number;
  /** The radio's control: who holds it, what can change, what this client may do. */
  control?: ControlState;
  /** The server's recordings by kind (empty: it records nothing). */
  recording?: RecordingState;
}

/** One recording's state (status's server.recorder and server.iq_recorder hold it too). */
export interface RecorderStatus {
  /** Switched on (by the settings, or a client's record start). */
  started: boolean;
  /** Writing now (false after a write error: see error). */
  recording: boolean;
  dir: string;
  file: string | null;
  bytes: number;
  queued_bytes: number;
  /** Why it cannot write, and what to do (null while all is well). */
  error: string | null;
  [key: string]: unknown;
}

/** The recordings a server has: its spectra (record_dir) and argos-spectrum's IQ samples
 * as SigMF (record_iq_dir). */
export interface RecordingState {
  spectrum?: RecorderStatus;
  iq?: RecorderStatus;
}

/** A recording was started or stopped (to everyone). */
export interface RecordingMessage extends ArgosMessage {
  type: "recording";
  event: "started" | "stopped";
  kinds: Array<"spectrum" | "iq">;
  client_id: number;
  role: "operator" | "admin";
  recording: RecordingState;
}

/** An argos-replay server's replay (status messages carry it as `replay` too). */
export interface ReplayState {
  /** The recording's name (a record_dir or a segment). */
  file: string;
  start_ns: number;
  end_ns: number;
  position_ns: number;
  speed: number;
  paused: boolean;
  loop: boolean;
}

/** The answer to a replay message (to the client that sent it). */
export interface ReplayMessage extends ArgosMessage, ReplayState {
  type: "replay";
}

/** A message the flowgraph posted (`status`, `gps`, ...): free-form keys besides these. */
export interface StreamMessage extends ArgosMessage {
  stream: number;
}

export interface StatusMessage extends StreamMessage {
  type: "status";
  /** From argos-replay: the replay's state. */
  replay?: ReplayState;
}

export interface GpsMessage extends StreamMessage {
  type: "gps";
}

/** A signal found in a stream's frames (docs/detections.md): its start, updates, end. */
export interface DetectionMessage extends StreamMessage {
  type: "detection";
  event: "start" | "update" | "end";
  id: number;
  center_freq_hz: number;
  bandwidth_hz: number;
  low_freq_hz: number;
  high_freq_hz: number;
  peak_db: number;
  mean_db: number;
  snr_db: number;
  start_ns: number;
  duration_s: number;
  /** When the event was decided: the time of the frame that started, updated or ended it
   * (ns since the Unix epoch; a Number loses precision under 256 ns). */
  time_ns: number;
  /** true when its centre lies in a watched range (detect_ranges). */
  watched: boolean;
  tuning: { center_freq_hz: number; span_hz: number };
  /** The latest GPS fix (null before the first), with its age. */
  gps: ({ fix: boolean; age_s: number } & { [key: string]: unknown }) | null;
}

/** The answer to {"type": "detections"}: the recent events the server kept, oldest first. */
export interface DetectionsMessage extends ArgosMessage {
  type: "detections";
  /** Each a detection message's body (without its type). */
  events: Omit<DetectionMessage, "type">[];
  /** true when `limit` left older kept events out. */
  truncated: boolean;
  /** Events the server keeps per stream. */
  kept: number;
}

/** What to ask requestDetections for (every key optional). */
export interface DetectionsQuery {
  /** The newest N, 1 to the server's `kept` (256). */
  limit?: number;
  /** Only events decided after this time (their time_ns); a BigInt is sent exactly. */
  sinceNs?: number | bigint;
  /** Only this stream's. */
  stream?: number;
}

/** The server's answer to a view request: the view it sends (its frames' header fields). */
export interface ViewMessage extends ArgosMessage {
  type: "view";
  stream_id: number;
  center_freq_hz: number;
  span_hz: number;
  bins: number;
  fps_divisor: number;
  /** The pyramid level the view is served from (each level halves the bins). */
  level: number;
  /** true when the server was at its limit of views and gave the nearest one in use. */
  snapped?: boolean;
  message?: string;
}

/** Who holds the radio's control lease (docs/control.md). */
export interface ControlHolder {
  client_id: number;
  name: string;
  role: "operator" | "admin";
  /** When it took the lease, ns since the Unix epoch. */
  since_ns: number;
}

/** A setting the source can change: a number in a range (with the device's step), or a
 * boolean; its value now. */
export interface ControlSetting {
  type: "number" | "bool";
  min?: number;
  max?: number;
  step?: number;
  unit?: string;
  value: number | boolean | null;
}

/** hello's "control" object, and the "control" message a raised role gets. */
export interface ControlState {
  holder: ControlHolder | null;
  idle_timeout_s: number;
  settings: Record<string, ControlSetting>;
  /** The allowed frequency ranges [low, high] in Hz (absent: the device's whole range). */
  freq_ranges?: [number, number][];
  you?: {
    client_id: number;
    role: "viewer" | "operator" | "admin";
    control_role: "operator" | "admin" | null;
    may_control: boolean;
    holds: boolean;
    why_not?: string;
  };
}

/** The lease changed hands (to everyone), or this client's role rose (a ControlState). */
export interface ControlMessage extends ArgosMessage, Partial<ControlState> {
  type: "control";
  event?: "acquired" | "taken" | "released" | "disconnected" | "expired";
  client_id?: number;
}

/** A change made to the radio, to everyone: each setting's old and new value. */
export interface TunedMessage extends ArgosMessage {
  type: "tuned";
  client_id: number;
  name: string;
  role: "operator" | "admin";
  changes: Record<string, { old: number | boolean | null; new: number | boolean }>;
}

/** The server's answer to a client message it cannot handle. */
export interface ErrorMessage extends ArgosMessage {
  type: "error";
  code: "bad_json" | "bad_message" | "unknown_type" | "binary_not_supported" | "auth_failed"
    | "rate_limited" | "control_refused" | "tune_refused" | "resume_refused"
    | "record_refused" | (string & {});
  message: string;
}

/** The answer to a resume (resume_from) or backfill (backfill_s) in the URL. */
export interface ResumeMessage extends ArgosMessage {
  type: "resume";
  streams: Array<{
    stream_id: number;
    /** The last sequence the client has; frames after it follow, marked replayed. */
    from_sequence: number;
    /** The first frame replayed (null: none, the client is up to date). */
    first_sequence: number | null;
    /** Frames already gone from the server's ring: the gap the client will see. */
    lost: number;
  }>;
  /** With a backfill: the seconds asked for. */
  backfill_s?: number;
}

/** The replayed frames are sent; live frames follow. */
export interface CaughtUpMessage extends ArgosMessage {
  type: "caught_up";
  /** Frames replayed. */
  replayed: number;
  /** Frames the ring lost before they could be replayed (a client reading slower than the
   * stream), counted in the missed field of the frames after them. */
  missed: number;
}

/** The answer to {"type": "ping", "id": X}. */
export interface PongMessage extends ArgosMessage {
  type: "pong";
  /** The ping's id, unchanged (null if it had none). */
  id: unknown;
  /** Server clock when it answered, ns since the Unix epoch (may lose precision). */
  server_time_ns: number;
}

/** The answer to {"type": "stats"}: informational counters. */
export interface StatsMessage extends ArgosMessage {
  type: "stats";
  client: Record<string, unknown>;
  total: Record<string, unknown>;
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface StateDetail {
  state: ConnectionState;
  /** For a scheduled retry: 1 for the first attempt since the last open connection, then 2, ... */
  attempt?: number;
  /** For a scheduled retry: the wait before it, ms. */
  delayMs?: number;
  /** For a scheduled retry: why the previous connection or attempt ended; for the final
   * "closed" after a refused token: why the client gave up. */
  error?: string;
  /** true on the "closed" state of a client that gave up because its token was refused. */
  authFailed?: true;
}

/** The server refused the token (an auth_failed error, or a close with 1008 before hello). */
export interface AuthFailedDetail {
  /** What the server said and what to do (never the token itself). */
  error: string;
  /** true with the retryAuthFailure option (a retry follows); false: the client stops and a
   * "closed" state follows. */
  willRetry: boolean;
}

export type GapReason = "dropped by server" | "sequence jump" | "stream restarted";
export const GAP_DROPPED_BY_SERVER: "dropped by server";
export const GAP_SEQUENCE_JUMP: "sequence jump";
export const GAP_STREAM_RESTARTED: "stream restarted";

/** Frames of a stream were lost before the next frame (dispatched just before it). */
export interface GapDetail {
  streamId: number;
  /** Frames lost (0 when unknown: a restarted stream). */
  lost: number;
  /** Sequence of the last frame received before the gap. */
  fromSequence: number;
  /** Sequence of the frame received after the gap. */
  toSequence: number;
  fromSequenceBig: bigint;
  toSequenceBig: bigint;
  reason: GapReason;
  /** The server restarted (a hello with a new session) since the previous frame. */
  sessionChanged: boolean;
}

export interface FrameDetail {
  frame: SpectrumFrame;
  /** Frames of this stream lost right before this one (0 almost always). */
  gap: number;
  /** Date.now() - frame.timestampMs at reception: only as right as the two clocks. */
  ageMs: number;
  /** Date.now() at reception, ms. */
  receivedMs: number;
  /** Size of the binary message, bytes. */
  sizeBytes: number;
}

export interface WarningDetail {
  /** What was skipped and why. */
  message: string;
  error: ProtocolError;
}

export interface ArgosClientEventMap {
  state: CustomEvent<StateDetail>;
  hello: CustomEvent<HelloMessage>;
  frame: CustomEvent<FrameDetail>;
  gap: CustomEvent<GapDetail>;
  /** Every JSON message, known types or not. */
  message: CustomEvent<ArgosMessage>;
  status: CustomEvent<StatusMessage>;
  gps: CustomEvent<GpsMessage>;
  detection: CustomEvent<DetectionMessage>;
  control: CustomEvent<ControlMessage>;
  tuned: CustomEvent<TunedMessage>;
  /** The answer to requestDetections. */
  detections: CustomEvent<DetectionsMessage>;
  /** A server "error" message (not a connection error: see "state"). */
  error: CustomEvent<ErrorMessage>;
  pong: CustomEvent<PongMessage>;
  stats: CustomEvent<StatsMessage>;
  /** The server's answer to the view option or setView. */
  view: CustomEvent<ViewMessage>;
  /** The server's answer to a resume or backfill: where each stream's replay starts. */
  resume: CustomEvent<ResumeMessage>;
  /** The replay is over: live frames follow. */
  caught_up: CustomEvent<CaughtUpMessage>;
  /** A recording was started or stopped (by any client). */
  recording: CustomEvent<RecordingMessage>;
  /** The answer to replay(). */
  replay: CustomEvent<ReplayMessage>;
  warning: CustomEvent<WarningDetail>;
  authfailed: CustomEvent<AuthFailedDetail>;
}

export interface ClientStats {
  /** Spectrum frames received and decoded. */
  frames: number;
  /** Bytes of all messages received. */
  bytes: number;
  /** Frames lost in all gaps. */
  lost: number;
  /** Gap events. */
  gaps: number;
  /** Connections opened again after one was lost. */
  reconnects: number;
  /** Messages skipped because they did not decode. */
  malformed: number;
  /** Round trip of the last heartbeat ping, ms (null until one). */
  lastRttMs: number | null;
  /** JSON messages received and decoded. */
  messages: number;
  /** Connection attempts that failed. */
  failedAttempts: number;
  /** Frames the server sent again from its resume ring (frame.replayed). */
  replayed: number;
}

/** What the client needs of a WebSocket: the browser's, Node's global one and the ws package fit. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => any) | null;
  onmessage: ((event: any) => any) | null;
  onerror: ((event: any) => any) | null;
  onclose: ((event: any) => any) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** A frame format to ask the server for (the options of the same names). */
export interface FrameFormat {
  encoding: FrameEncoding;
  compress?: boolean;
  stepDb?: number;
  secondTrace?: boolean;
}

/** A view of one stream to ask for (the view option, setView); every key optional, absent:
 * the stream's own (its whole band, its bins, every frame). */
export interface ViewRequest {
  /** The stream (an id from hello); default: the first. */
  streamId?: number;
  /** The range, in Hz (spanHz more than 0). */
  centerFreqHz?: number;
  spanHz?: number;
  /** Bins wanted across spanHz (e.g. the canvas width in device pixels), 1-1048576. */
  bins?: number;
  /** Get only the frames whose sequence is a multiple of it, 1-100 (default 1). */
  fpsDivisor?: number;
}

export interface ArgosClientOptions {
  /** Ceiling of the first reconnect delay, ms (default 500). */
  backoffBaseMs?: number;
  /** Largest reconnect delay, ms (default 10000). */
  backoffCapMs?: number;
  /** How long a connection must stay open to reset the backoff, ms (default 5000). */
  stableAfterMs?: number;
  /** Interval of {"type":"ping"} messages, ms (default 5000; 0: none). */
  heartbeatIntervalMs?: number;
  /** No message for this long means the connection is dead, ms (default 10000; 0: never). */
  heartbeatTimeoutMs?: number;
  /** Time allowed for one connection attempt to open, ms (default 10000; 0: no limit). */
  openTimeoutMs?: number;
  /** WebSocket implementation (default globalThis.WebSocket). */
  WebSocket?: WebSocketConstructor;
  /** Random source in [0, 1) for the backoff jitter (default Math.random). */
  random?: () => number;
  /** Frame encoding to ask the server for (in the URL query); default: each stream's own. */
  encoding?: FrameEncoding;
  /** Ask for deflated payloads (in the URL query); frames still arrive in order. */
  compress?: boolean;
  /**
   * With encoding "uint8": a fixed step in dB, 0.01-20 (`step_db` in the URL query), instead
   * of the automatic one (0, the default: each frame's range / 255). A coarser step deflates
   * better; every value stays within half a step. A RangeError otherwise, or without
   * encoding "uint8".
   */
  stepDb?: number;
  /** Also receive the second trace of streams that offer one (`second_trace=1` in the URL
   * query): `frame.secondPowerDb`. Without an encoding, asks for float32. */
  secondTrace?: boolean;
  /** A view of one stream to get instead of the whole stream, every frame (in the URL
   * query: it applies from the first frame and after every reconnect; see setView). A
   * RangeError for a value the server would refuse. */
  view?: ViewRequest | null;
  /**
   * The server's token, sent in a first {"type": "auth", "token": ...} message on every
   * connection (never in the URL); null or absent: none. A TypeError (that does not show
   * it) for an empty token, one longer than 4096 characters, with surrounding whitespace
   * or with a control character.
   */
  token?: string | null;
  /** Keep retrying, with the usual backoff, after the server refused the token, instead of
   * giving up (default false). */
  retryAuthFailure?: boolean;
  /** On a reconnect to the same server, ask for the frames missed meanwhile (resume_session
   * and resume_from in the URL); they come with frame.replayed before the live ones
   * (default true). */
  resume?: boolean;
  /** On the first connection, ask for the last seconds of every stream the server holds
   * (backfill_s in the URL; 0, the default: none). */
  backfillS?: number;
}

/** Reconnect delays: exponential backoff with full jitter, reset once a link is stable. */
export class Backoff {
  constructor(options?: { baseMs?: number; capMs?: number; stableAfterMs?: number; random?: () => number });
  readonly baseMs: number;
  readonly capMs: number;
  readonly stableAfterMs: number;
  /** Attempts counted since the last reset (stops growing once the ceiling is the cap). */
  attempt: number;
  /** The largest delay the next attempt can get, ms. */
  ceilingMs(): number;
  /** random() * ceilingMs(), and count the attempt. */
  nextDelayMs(): number;
  /** Report that a connection closed after openForMs ms open. */
  connectionClosed(openForMs: number): void;
}

/** Gap detection from `missed` and per-stream sequence numbers. */
export class GapDetector {
  /** The session of the latest hello (null before the first). */
  readonly session: string | null;
  /** The sequence of the latest frame of each stream: where a resume starts. */
  lastSequences(): Map<number, bigint>;
  /** Record the session of a hello; a different one means the server restarted. */
  newSession(session: string | null): void;
  /** Record a stream's frame rate divisor (from a view reply); forgotten on newSession(). */
  setFpsDivisor(streamId: number, fpsDivisor: number): void;
  /** Account for one frame; the gap before it, or null. */
  observe(frame: Pick<SpectrumFrame, "streamId" | "sequence" | "missed"> & { sequenceBig?: bigint }): GapDetail | null;
}

// Spelled out rather than taken from lib.dom, so the file also checks with only @types/node.
type ListenerOptions = boolean | { capture?: boolean; once?: boolean; passive?: boolean; signal?: AbortSignal };
type AnyEventListener = ((event: Event) => void) | { handleEvent(event: Event): void } | null;

/** Receives spectrum frames and messages from a gr-argos server, reconnecting forever
 * (until close(), or until the server refuses its token). */
export class ArgosClient extends EventTarget {
  /**
   * @param url ws://HOST:PORT/ or wss://...; in a page also http(s) or relative URLs, and
   *   by default the page's own server.
   * @throws {TypeError} for a URL that is not a WebSocket URL, no WebSocket implementation,
   *   or a token no server could hold.
   * @throws {RangeError} for an invalid duration, encoding or stepDb.
   */
  constructor(url?: string, options?: ArgosClientOptions);
  /** The ws:// or wss:// URL connected to, with the frame format asked for in its query. */
  readonly url: string;
  /** The frame format asked for (a copy); encoding undefined: each stream's own. */
  readonly format: { encoding: FrameEncoding | undefined; compress: boolean; stepDb: number;
    secondTrace: boolean };
  /**
   * Ask for another frame format: a set_encoding message on an open connection (confirmed
   * by the server's "encoding" message; one still opening gets it when it opens) and the URL
   * query of every later connection.
   * @throws {RangeError} for an unknown encoding, a bad stepDb, or no encoding.
   */
  setFormat(format: FrameFormat): void;
  /** The view asked for (a copy), or null while none. */
  readonly view: ViewRequest | null;
  /**
   * Ask for a view of a stream: a set_view message on an open connection (answered by a
   * "view" event; one still opening gets it when it opens) and the URL query of every later
   * connection.
   * @throws {RangeError} for a value the server would refuse.
   */
  setView(streamId: number | undefined, view?: Omit<ViewRequest, "streamId">): void;
  /** Ask for, give back or (admins) take the radio's control lease (docs/control.md). */
  control(action: "acquire" | "release" | "take", name?: string): void;
  /** Change the radio's settings by name, as the lease's holder: answered by "tuned". */
  tune(changes: Record<string, number | boolean>): void;
  /** Start or stop the server's recordings (or one kind), as an operator or admin:
   * answered by a "recording" event to everyone, or an error "record_refused". */
  record(action: "start" | "stop", kind?: "spectrum" | "iq"): void;
  /** Control an argos-replay server's (shared) replay: answered by a "replay" event. */
  replay(action: "play" | "pause" | "seek" | "speed" | "state",
         fields?: { offset_s?: number; time_ns?: number; speed?: number }): void;
  /** Present an operator's or admin's token on the open connection, to raise its role. */
  authenticate(token: string): void;
  /**
   * Ask for the recent detection events the server kept: a "detections" event answers.
   * @throws {RangeError} for a value the server would refuse; {Error} if not connected.
   */
  requestDetections(query?: DetectionsQuery): void;
  /** "closed" until connect(), and after close(). */
  readonly state: ConnectionState;
  /** A copy of the counters since the client was created. */
  readonly stats: ClientStats;
  /** The latest hello message (null before the first). */
  readonly hello: HelloMessage | null;
  /** Why the last connection or attempt ended (null while open). */
  readonly lastError: string | null;
  /** true once the client stopped because the server refused its token (until connect()). */
  readonly authFailed: boolean;
  /**
   * Set the token of every later connection, or forget it (null). An open connection is
   * not affected; after a refusal, set the right one and call connect().
   * @throws {TypeError} for a token no server could hold (the message does not show it).
   */
  setToken(token: string | null): void;
  /** Start connecting, and reconnecting until close() or a refused token. Does nothing if
   * already running. */
  connect(): void;
  /** Close the connection (code 1000) and stop reconnecting; connect() starts again. */
  close(): void;
  /**
   * Send one JSON message, e.g. send({ type: "stats" }).
   * @throws {Error} if no connection is open.
   */
  send(message: { type: string; [key: string]: unknown } | string): void;

  addEventListener<K extends keyof ArgosClientEventMap>(
    type: K,
    listener: (this: ArgosClient, event: ArgosClientEventMap[K]) => void,
    options?: ListenerOptions,
  ): void;
  addEventListener(type: string, listener: AnyEventListener, options?: ListenerOptions): void;
  removeEventListener<K extends keyof ArgosClientEventMap>(
    type: K,
    listener: (this: ArgosClient, event: ArgosClientEventMap[K]) => void,
    options?: boolean | { capture?: boolean },
  ): void;
  removeEventListener(type: string, listener: AnyEventListener, options?: boolean | { capture?: boolean }): void;
}
