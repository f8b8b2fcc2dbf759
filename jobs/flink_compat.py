"""Every call the jobs make past PyFlink's public API, in one place: the Java objects behind a
stream or an environment, the JVM-side key_by, and jars on the client's class loader.

Written against apache-flink 2.2.1 (`PYFLINK_VERSION`); tests/integration/test_flink_compat.py
runs each call on a local environment, so an upgrade that breaks one fails there first.
"""

from __future__ import annotations

from collections.abc import Iterable

PYFLINK_VERSION = "2.2.1"
KEY_SELECTOR = "KeyByKeySelector"  # flink-python's selector of a Row's first field
DATA_STREAM_UTILS = "org.apache.flink.streaming.api.datastream.DataStreamUtils"


def _jvm():
    from pyflink.java_gateway import get_gateway

    return get_gateway().jvm


def environment_configuration(env):
    """The Java Configuration the environment builds its job from (a live object: what is set on
    it applies to operators added afterwards, and to the job's pipeline.jars / python.files)."""
    from pyflink.util.java_utils import get_j_env_configuration

    return get_j_env_configuration(env._j_stream_execution_environment)


def add_jars_to_client(jar_uris: list[str]) -> None:
    """Put jars on the client's context class loader, where the planner looks for table
    factories and UDFs (pipeline.jars does not reach it)."""
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    add_jars_to_context_class_loader(jar_uris)


def set_output_type(stream, type_info) -> None:
    """Declare `stream`'s rows as `type_info`: the Table API types a stream as ExternalTypeInfo,
    and PyFlink's keyed operators need the equivalent RowTypeInfo (same Row objects)."""
    stream._j_data_stream.getTransformation().setOutputType(type_info.get_java_type_info())


def java_string_array(values: Iterable[str]):
    """A sorted Java String[] of `values`, for a JVM constructor."""
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    items = sorted(values)
    array = gateway.new_array(gateway.jvm.java.lang.String, len(items))
    for i, value in enumerate(items):
        array[i] = value
    return array


def _jvm_class(class_name: str):
    cls = _jvm()
    for part in class_name.split("."):
        cls = getattr(cls, part)
    return cls


def jvm_object(class_name: str, *args):
    """An instance of a JVM class on the job's classpath, e.g. a function of udfs/jvm."""
    return _jvm_class(class_name)(*args)


def key_by_first_field(stream, row_type, jvm_process=None, jvm_operator=None):
    """`stream` keyed in the JVM on its rows' first field: PyFlink's `key_by` would run a Python
    operator per record to compute the key. `jvm_process`: `(function, name)`, a JVM keyed
    process function (rows of `row_type` in and out) run in its own task, then keyed again on
    the same key without another shuffle. `jvm_operator`: `(operator, name)`, a JVM keyed
    operator after it (rows of `row_type` in and out), chained to what comes next. Returns a
    PyFlink KeyedStream."""
    from pyflink.common import Types
    from pyflink.datastream.data_stream import KeyedStream

    j_row_type = row_type.get_java_type_info()
    key_type = Types.ROW([Types.STRING()]).get_java_type_info()
    j_keyed = stream._j_data_stream.keyBy(jvm_object(KEY_SELECTOR), key_type)
    if jvm_process is not None:
        function, name = jvm_process
        j_processed = j_keyed.process(function, j_row_type).name(name).uid(name)
        # Its own task (thread): it runs beside the Python operator, not in its turn.
        j_processed = j_processed.disableChaining()
        j_keyed = _jvm_class(DATA_STREAM_UTILS).reinterpretAsKeyedStream(
            j_processed, jvm_object(KEY_SELECTOR), key_type
        )
    if jvm_operator is not None:
        operator, name = jvm_operator
        j_transformed = j_keyed.transform(name, j_row_type, operator).uid(name)
        j_keyed = _jvm_class(DATA_STREAM_UTILS).reinterpretAsKeyedStream(
            j_transformed, jvm_object(KEY_SELECTOR), key_type
        )
    return KeyedStream(j_keyed, row_type, stream)


def broadcast_watermark(ctx) -> int:
    """The operator's watermark in a KeyedBroadcastProcessFunction's process_broadcast_element:
    PyFlink's `ctx.current_watermark()` there calls a method the thread-mode context lacks
    (AttributeError: 'currentWatermark', 2.2.1); its timer service has it. Process mode's
    context has no Java object and answers itself."""
    j_context = getattr(ctx, "_j_context", None)
    if j_context is None:
        return ctx.current_watermark()
    return j_context.timerService().currentWatermark()


def subtask_index(runtime_context) -> int:
    """The subtask's index. Thread mode's runtime context calls getIndexOfThisSubtask, which
    Flink 2's RuntimeContext no longer has (AttributeError, 2.2.1): its TaskInfo has it."""
    try:
        return runtime_context.get_index_of_this_subtask()
    except AttributeError:
        return runtime_context._runtime_context.getTaskInfo().getIndexOfThisSubtask()


def key_switch(runtime_context):
    """`switch(ctx, user_id)`: the keyed operator's state and timers moved to another key of its
    own (a user the JVM release operator released in the same record), returning the context to
    use for that user. Thread mode only: PyFlink hands the operator the Java keyed state backend
    (`setCurrentKey` with the key as flink-python's KeyByKeySelector builds it, a Row of the
    user_id; timers follow the backend's key). A runtime context without a Java backend (the
    memory one of the tests and benchmarks) must give a backend with `set_current_key`."""
    backend = runtime_context.get_keyed_state_backend()
    j_backend = getattr(backend, "_keyed_state_backend", None)
    if j_backend is None:

        def switch_memory(ctx, user_id: str):
            backend.set_current_key(user_id)
            return ctx

        return switch_memory
    from pemja import findClass

    j_row = findClass("org.apache.flink.types.Row")

    def switch(ctx, user_id: str):
        key = j_row.withPositions(1)  # Row.of(user_id) fails through pemja (varargs)
        key.setField(0, user_id)
        j_backend.setCurrentKey(key)
        return UserContext(ctx, user_id)

    return switch


class UserContext:
    """A thread-mode keyed context after `key_switch`: PyFlink's answers get_current_key from its
    own record, so the user is given here; timers and state follow the backend's key."""

    __slots__ = ("_ctx", "_user_id")

    def __init__(self, ctx, user_id: str):
        self._ctx, self._user_id = ctx, user_id

    def get_current_key(self) -> str:
        return self._user_id

    def timer_service(self):
        return self._ctx.timer_service()

    def __getattr__(self, name: str):
        return getattr(self._ctx, name)
