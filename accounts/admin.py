"""Django admin for operators: users, teams, memberships, invitations."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.models import Invitation, Membership, Team, User


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class UserMembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["team"]
    verbose_name_plural = _("teams")


@admin.register(User)
class XRouterUserAdmin(UserAdmin):
    list_display = [
        "username",
        "email",
        "is_active",
        "is_staff",
        "team_count",
        "last_login",
        "date_joined",
    ]
    list_filter = ["is_active", "is_staff", "is_superuser", "memberships__role"]
    search_fields = ["username", "email", "first_name", "last_name", "memberships__team__slug"]
    inlines = [UserMembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).annotate(_team_count=Count("memberships"))

    @admin.display(description=_("teams"), ordering="_team_count")
    def team_count(self, obj: Any) -> int:
        return int(obj._team_count)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "member_count", "key_count", "created_at"]
    search_fields = ["name", "slug", "memberships__user__username"]
    list_filter = [("created_at", admin.DateFieldListFilter)]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                _members=Count("memberships", distinct=True),
                _keys=Count("api_keys", distinct=True),
            )
        )

    @admin.display(description=_("members"), ordering="_members")
    def member_count(self, obj: Any) -> int:
        return int(obj._members)

    @admin.display(description=_("keys"), ordering="_keys")
    def key_count(self, obj: Any) -> int:
        return int(obj._keys)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "created_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "user__email", "team__slug", "team__name"]
    autocomplete_fields = ["user", "team"]
    list_select_related = ["user", "team"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations are created in the dashboard; the admin never sees a token."""

    list_display = [
        "team",
        "role",
        "email",
        "created_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    ]
    list_filter = [
        "role",
        ("accepted_at", admin.EmptyFieldListFilter),
        ("revoked_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["team__slug", "team__name", "email", "created_by__username"]
    exclude = ["token_hash"]
    readonly_fields = [
        "public_id",
        "team",
        "role",
        "email",
        "created_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
    ]
    list_select_related = ["team", "created_by", "accepted_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
