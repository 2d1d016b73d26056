"""Issue #13, item by item: the behavioural test(s) behind each item.

Each row names tests that exercise the behaviour (values, errors, state),
not just an import; `test_every_listed_test_exists` keeps the table true.

| item | behaviour | tests |
|------|-----------|-------|
| 1 | features matched by name, DataFrames, dtype errors name the feature | reliability/test_inputs_by_name.py::test_predictions_do_not_depend_on_feature_order, reliability/test_inputs_by_name.py::test_dataframe_accepted_directly_with_pandas_string_columns, reliability/test_bad_input_matrix.py::test_bad_input_is_refused_by_name |
| 2 | NaN/Inf features, losses, gradients: error naming them (train, evaluate, validation, predict), or a skip that leaves no trace | reliability/test_nonfinite.py::test_nan_feature_stops_training_naming_the_feature, reliability/test_nonfinite.py::test_nan_feature_detected_with_and_without_onednn, reliability/test_nonfinite.py::test_skip_mode_skips_counts_and_logs, reliability/test_nonfinite.py::test_nonfinite_gradient_with_finite_loss_names_the_parameters, reliability/test_nonfinite_eval_and_skip.py::test_evaluate_with_nan_feature_raises_naming_it, reliability/test_nonfinite_eval_and_skip.py::test_validation_data_with_nan_feature_stops_fit, reliability/test_nonfinite_eval_and_skip.py::test_predict_with_nan_feature_raises_naming_it, reliability/test_nonfinite_eval_and_skip.py::test_skipped_batch_leaves_strategy_and_optimizer_state_unchanged, reliability/test_nonfinite_eval_and_skip.py::test_batchnorm_statistics_do_not_see_a_refused_batch, reliability/test_skip_distributed.py::test_mirrored_skip_is_a_real_skip, reliability/test_fuzz.py::test_training_errors_on_nonfinite_features_or_stays_finite |
| 3 | Binary accepts only 0/1 and missing markers | reliability/test_bad_input_matrix.py::test_invalid_labels_in_a_dataset_stop_training_by_task, reliability/test_fuzz.py::test_check_labels_matches_the_contract_eager_graph_xla |
| 4 | Multiclass ids outside [0, K) or non-integral: error naming the task, also under XLA | reliability/test_bad_input_matrix.py::test_invalid_labels_in_a_dataset_stop_training_by_task, reliability/test_bad_input_matrix.py::test_bad_input_is_refused_by_name |
| 5 | Regression refuses ±Inf | reliability/test_bad_input_matrix.py::test_invalid_labels_in_a_dataset_stop_training_by_task, reliability/test_fuzz.py::test_evaluate_errors_or_matches_the_masked_mean |
| 6 | string labels, length mismatch, `report` inputs | reliability/test_bad_input_matrix.py::test_from_arrays_string_labels_same_message_as_pandas, reliability/test_bad_input_matrix.py::test_report_refuses_label_shape_mismatch, reliability/test_inputs_by_name.py::test_report_rejects_label_keys_that_are_not_tasks |
| 7 | unlabelled task logs NaN, strategy state frozen for it | test_unlabelled_and_recompile.py::test_task_without_labels_logs_nan_not_zero, test_unlabelled_and_recompile.py::test_uncertainty_freezes_the_log_variance_of_an_unlabelled_task, test_unlabelled_and_recompile.py::test_dwa_does_not_favour_an_unlabelled_task |
| 8 | per-task masks checked by name | reliability/test_inputs_by_name.py::test_sample_weight_for_some_tasks_only_with_numpy_inputs, reliability/test_inputs_by_name.py::test_wrong_mask_shape_in_a_dataset_names_the_task |
| 9 | Uncertainty: bounded log-variances, honest `loss` and `uncertainty_objective` | weighting/test_uncertainty.py::test_runaway_log_variances_are_bounded_and_the_logged_loss_tracks_the_tasks, reliability/test_uncertainty_logs.py::test_runaway_log_variances_are_visible_in_loss_and_objective |
| 10 | recompiling drops the old strategy; weights are training-only logs; comparable aggregator loss | test_unlabelled_and_recompile.py::test_recompile_drops_the_old_strategy, test_unlabelled_and_recompile.py::test_weights_are_training_only_logs, test_unlabelled_and_recompile.py::test_aggregator_loss_is_the_plain_sum_in_training_and_validation |
| 11 | freezing survives `.keras` reload | layers/test_freezing.py::test_frozen_layers_stay_frozen_after_reload, layers/test_freezing.py::test_any_frozen_layer_of_a_multitask_model_stays_frozen_after_reload |
| 12 | ConFIG and CAGrad on rank-deficient Jacobians (torchjd's property suite) | weighting/test_properties.py::test_config_matches_pinv_on_dependent_rows, weighting/test_properties.py::test_cagrad_c1_is_zero_when_zero_is_in_the_hull, weighting/test_properties.py::test_non_conflicting |
| 13 | `MultiTaskObjective` baseline survives resume | callbacks/test_objective.py::test_baseline_survives_a_new_fit_and_a_new_process, reliability/test_resume.py::test_resumed_run_matches_the_uninterrupted_one |
| 14 | DWA's explicit epoch hook; SIGKILL mid-epoch + resume for every stateful strategy | reliability/test_dwa_batch_resume.py::test_batch_level_resume_counts_no_phantom_epoch, reliability/test_resume.py::test_resumed_run_matches_the_uninterrupted_one |
| 15 | concurrent exports both land; overwrites serialised | reliability/test_export_faults.py::test_concurrent_exports_with_next_version_both_land, reliability/test_export_faults.py::test_concurrent_overwrites_are_never_both_told_success |
| 16 | SIGKILL during overwrite keeps a version; recovery; fsync | reliability/test_export_faults.py::test_sigkill_while_overwriting_keeps_a_complete_version, reliability/test_export_faults.py::test_sigkill_between_fallback_renames_is_recovered, reliability/test_export_faults.py::test_recover_versions_restores_and_cleans, reliability/test_export_faults.py::test_export_fsyncs_before_publishing |
| 17 | `signature_spec` checked against `saved_model.pb` | reliability/test_export_faults.py::test_signature_spec_rejects_edited_metadata, reliability/test_export_faults.py::test_signature_spec_rejects_truncated_saved_model, reliability/test_export_faults.py::test_signature_spec_rejects_corrupt_files |
| 18 | request helpers: no NaN/Inf/overflow, valid JSON, empty batch consistent | reliability/test_export_faults.py::test_requests_reject_non_finite_and_overflow, reliability/test_export_faults.py::test_payload_without_spec_is_valid_json, reliability/test_export_faults.py::test_empty_batch_is_refused_by_builder_and_decoder |

Follow-ups in the same spirit: no warning spam
(reliability/test_no_warning_spam.py::test_training_with_an_embedding_prints_no_indexed_slices_warning,
reliability/test_inputs_by_name.py::test_report_on_many_models_prints_no_retracing_warning,
reliability/test_inputs_by_name.py::test_fit_on_a_dataset_does_not_trigger_the_shuffle_warning).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _listed() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in (__doc__ or "").splitlines():
        match = re.match(r"\| (\d+) \|", line)
        if match:
            rows[match.group(1)] = re.findall(r"[\w/]+\.py::\w+", line)
    return rows


def test_every_item_has_a_behavioural_test():
    rows = _listed()
    assert sorted(rows, key=int) == [str(i) for i in range(1, 19)]
    assert all(rows.values()), [item for item, tests in rows.items() if not tests]


def test_every_listed_test_exists():
    names = re.findall(r"[\w/]+\.py::\w+", __doc__ or "")
    missing = []
    for ref in names:
        path, function = ref.split("::")
        tree = ast.parse((TESTS / path).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if function not in defined:
            missing.append(ref)
    assert not missing, missing
