"""The strings of the pages' frame, of the record-status dashboard and live form, and of
query assignment, in English and Simplified Chinese (merged into
:data:`consortia.web.i18n.CATALOGUES`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["EN", "ZH"]

EN: Final[Mapping[str, str]] = {
    "nav.label": "Main",
    "nav.skip": "Skip to the page's content",
    "nav.study": "Study",
    "nav.choose_study": "choose",
    "nav.subjects": "Subjects",
    "nav.queries": "Queries",
    "nav.sdv": "Verification",
    "nav.approvals": "Approvals",
    "nav.hub": "Consortium",
    "form.live_problems": "Problems on this form:",
    "form.live_no_problems": "No problems on this form.",
    "nav.dashboard": "Dashboard",
    "dashboard.title": "Record status",
    "dashboard.legend": "Legend",
    "dashboard.status": "Subject status",
    "dashboard.state": "With a form",
    "dashboard.open_query": "with an open query",
    "dashboard.shown": "Subjects {first}–{last} of {total}",
    "dashboard.previous": "Previous subjects",
    "dashboard.none": "No subject matches.",
    "form.meaning_authorship": "Authorship: I am the author of the data in this form",
    "form.meaning_review": "Review: I have reviewed the data in this form",
    "form.meaning_approval": "Approval: I approve the data in this form as accurate and complete",
    "form.meaning_responsibility": "Responsibility: I take responsibility for the data in this "
    "form",
    "queries.assignee": "assigned to",
    "queries.unassigned": "nobody",
    "queries.assign_to": "Assign to",
    "queries.step_assign": "Assign",
    "form.done_assign": "The query's assignee is saved.",
    "review.assignee": "Assigned to",
    "review.assigned_to_me": "Assigned to me",
}

ZH: Final[Mapping[str, str]] = {
    "nav.label": "主导航",
    "nav.skip": "跳至页面内容",
    "nav.study": "研究",
    "nav.choose_study": "请选择",
    "nav.subjects": "受试者",
    "nav.queries": "质疑",
    "nav.sdv": "源数据核查",
    "nav.approvals": "审批",
    "nav.hub": "联盟",
    "form.live_problems": "本表单存在问题：",
    "form.live_no_problems": "本表单没有问题。",
    "nav.dashboard": "状态总览",
    "dashboard.title": "记录状态",
    "dashboard.legend": "图例",
    "dashboard.status": "受试者状态",
    "dashboard.state": "含有表单",
    "dashboard.open_query": "有未关闭质疑",
    "dashboard.shown": "第 {first}–{last} 名受试者，共 {total} 名",
    "dashboard.previous": "上一页",
    "dashboard.none": "没有符合条件的受试者。",
    "form.meaning_authorship": "作者：我是本表单中数据的作者",
    "form.meaning_review": "审阅：我已审阅本表单中的数据",
    "form.meaning_approval": "批准：我批准本表单中的数据准确且完整",
    "form.meaning_responsibility": "负责：我对本表单中的数据负责",
    "queries.assignee": "负责人",
    "queries.unassigned": "未指派",
    "queries.assign_to": "指派给",
    "queries.step_assign": "指派",
    "form.done_assign": "已保存质疑的负责人。",
    "review.assignee": "负责人",
    "review.assigned_to_me": "指派给我的",
}
