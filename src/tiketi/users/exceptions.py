from tiketi.core.errors import Conflict, InvalidInput, NotFound


class EmailTaken(Conflict):
    code = "email_taken"

    def default_detail(self) -> str:
        return "An account with this email already exists"


class UserNotFound(NotFound):
    code = "user_not_found"

    def default_detail(self) -> str:
        return "No such user"


class WeakPassword(InvalidInput):
    code = "weak_password"


class WrongPassword(InvalidInput):
    code = "wrong_password"

    def default_detail(self) -> str:
        return "The current password is wrong"


class CannotChangeSelf(Conflict):
    code = "cannot_change_self"

    def default_detail(self) -> str:
        return "Admins cannot demote or deactivate themselves; ask another admin"
