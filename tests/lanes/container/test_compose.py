"""The container lane: the compose stack on this host's Docker (cgroup v1) serves the flow of
tests/lanes/compose_flow.py."""

from tests.lanes import compose_flow

# Collected here with this module's fixtures, in this order (the last one takes the stack down).
test_hello_world_runs_in_every_language = compose_flow.test_hello_world_runs_in_every_language
test_an_uploaded_file_is_read_by_the_sandbox = compose_flow.test_an_uploaded_file_is_read_by_the_sandbox
test_a_generated_png_is_downloaded = compose_flow.test_a_generated_png_is_downloaded
test_python_state_survives_from_one_call_to_the_next = compose_flow.test_python_state_survives_from_one_call_to_the_next
test_a_memory_bomb_is_killed_while_its_neighbour_finishes = (
    compose_flow.test_a_memory_bomb_is_killed_while_its_neighbour_finishes
)
test_a_fork_bomb_is_contained_and_the_service_stays_healthy = (
    compose_flow.test_a_fork_bomb_is_contained_and_the_service_stays_healthy
)
test_a_sandbox_runs_in_a_cgroup_inside_the_api_containers_own = (
    compose_flow.test_a_sandbox_runs_in_a_cgroup_inside_the_api_containers_own
)
test_compose_down_leaves_no_container_network_or_volume = (
    compose_flow.test_compose_down_leaves_no_container_network_or_volume
)
